"""ASGI entry point: ``uvicorn app_api.main:app``."""

from app_api.app import create_app

app = create_app()
