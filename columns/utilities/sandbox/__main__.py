"""``python -m columns.utilities.sandbox --port 8701 --secret ... [--demo]``"""

from columns.utilities.sandbox.demo import main

main()
