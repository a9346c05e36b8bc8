"""Importing task modules so the broker knows every task (api process and worker alike)."""

from __future__ import annotations

import importlib
from typing import Any


def import_task_modules(registry: Any | None = None) -> None:
    from app_api.jobs import TASK_MODULES

    for name in TASK_MODULES:
        importlib.import_module(name)
    if registry is not None:
        for column in registry.columns.values():
            column.submodule("tasks")
