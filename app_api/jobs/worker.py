"""Worker entry point: imports every task module (platform and columns) before serving."""

from __future__ import annotations

from app_api.home.loader import discover
from app_api.jobs import broker, scheduler
from app_api.jobs.runtime import import_task_modules
from app_api.settings import get_settings

import_task_modules()
for _column in discover(strict=get_settings().strict_columns).columns.values():
    _column.submodule("tasks")

__all__ = ["broker", "scheduler"]
