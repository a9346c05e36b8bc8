"""ASGI entry point: ``uvicorn app_api.wiring.main:app``."""

from app_api.wiring.app import create_app

app = create_app()
