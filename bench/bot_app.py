"""The app as ``make run`` serves it, with the assistant's router mounted if the app does not yet."""

from __future__ import annotations

from app_api.wiring.app import create_app
from bot.router import router

app = create_app()
if not any(getattr(r, "path", "") == "/api/v1/bot/messages" for r in app.routes):
    app.include_router(router, prefix="/api/v1")
