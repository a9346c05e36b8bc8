"""Worker entry point (``taskiq worker app_api.wiring.worker:broker``).

Importing the components and discovering the columns imports every task module, so the worker
knows the same jobs as the api process. Each worker process also runs the jobs loop (schedules and
relay: safe in any number of processes), so a deployment without ``wojia scheduler`` still runs its
periodic jobs and recovers lost ones.
"""

from __future__ import annotations

from taskiq import TaskiqEvents, TaskiqState

from app_api.core.heap import freeze_startup_heap, unfreeze_heap
from app_api.core.jobs import broker
from app_api.core.jobs.loop import loop
from app_api.core.jobs.settings import get_jobs_settings
from app_api.core.settings import get_settings
from app_api.platform.home.loader import discover
from app_api.wiring.components import components

components()
discover(strict=get_settings().strict_columns)


@broker.on_event(TaskiqEvents.WORKER_STARTUP)
async def _start_loop(state: TaskiqState) -> None:
    if get_jobs_settings().run_loop is not False:
        loop.start()
    freeze_startup_heap()  # see app_api.core.heap: a job's full collections stay short too


@broker.on_event(TaskiqEvents.WORKER_SHUTDOWN)
async def _stop_loop(state: TaskiqState) -> None:
    unfreeze_heap()
    await loop.stop()


__all__ = ["broker"]
