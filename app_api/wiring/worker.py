"""Worker entry point (``taskiq worker app_api.wiring.worker:broker``).

Importing the components and discovering the columns imports every task module, so the worker
knows the same jobs as the api process.
"""

from __future__ import annotations

from app_api.core.jobs import broker, scheduler
from app_api.core.settings import get_settings
from app_api.platform.home.loader import discover
from app_api.wiring.components import components

components()
discover(strict=get_settings().strict_columns)

__all__ = ["broker", "scheduler"]
