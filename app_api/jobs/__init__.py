"""Background jobs: taskiq (Redis streams in production, in-process in the embedded default).

Task modules are imported by the worker so their tasks are registered: platform packages list
theirs in ``TASK_MODULES``; each column's ``tasks.py`` is imported by the column loader.
"""

from __future__ import annotations

from app_api.jobs.broker import broker, scheduler

TASK_MODULES: list[str] = [
    "app_api.jobs.outbox",
    "app_api.notify",
    "payments.tasks",
    "identity.tasks",
]

__all__ = ["TASK_MODULES", "broker", "scheduler"]
