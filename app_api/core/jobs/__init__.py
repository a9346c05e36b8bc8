"""Background jobs: taskiq (Redis streams in production, in-process in the embedded default).

Task modules register their tasks when imported; the wiring imports every component's task modules
and every column's ``tasks.py`` (``app_api.wiring.worker``) in the api process and the worker alike.
"""

from __future__ import annotations

from app_api.core.jobs.broker import broker, scheduler

__all__ = ["broker", "scheduler"]
