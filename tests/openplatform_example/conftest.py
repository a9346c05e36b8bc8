"""The example column (docs/examples/school_fees) is not an installed package: its folder is put on
``sys.path`` here, before this folder's test modules import it."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples" / "school_fees"
if str(EXAMPLE_DIR) not in sys.path:
    sys.path.insert(0, str(EXAMPLE_DIR))
