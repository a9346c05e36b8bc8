"""Background jobs: rows in the outbox (the truth) woken up through taskiq (Redis streams in
production, in-process in the embedded default). See ``outbox`` for the delivery guarantee,
``runner`` for retries and dead letters, ``schedules`` for periodic jobs, ``loop`` for the relay.

Task modules register their tasks when imported; the wiring imports every component's task modules
and every column's ``tasks.py`` (``app_api.wiring.worker``) in the api process and the worker alike.
"""

from __future__ import annotations

from app_api.core.jobs.broker import broker

__all__ = ["broker"]
