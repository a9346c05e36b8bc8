"""ASGI entry point: ``uvicorn app_api.wiring.main:app``."""

import sys

from app_api.core.settings import StartupRefused
from app_api.wiring.app import create_app

try:
    app = create_app()
except StartupRefused as refused:
    # A clear line instead of a traceback from inside uvicorn's import of this module.
    print(refused, file=sys.stderr)
    raise SystemExit(2) from None
