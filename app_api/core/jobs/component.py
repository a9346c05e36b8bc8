"""The jobs infrastructure's own tables (outbox, schedules), the runner, and the in-process loop of
the embedded default."""

from app_api.core.component import Component
from app_api.core.jobs import models, outbox, runner


async def _start() -> None:
    from app_api.core.jobs.loop import loop
    from app_api.core.jobs.settings import get_jobs_settings
    from app_api.core.settings import get_settings

    run = get_jobs_settings().run_loop
    if run if run is not None else get_settings().embedded_jobs:
        loop.start()


async def _stop() -> None:
    from app_api.core.jobs.loop import loop

    await loop.stop()


component = Component(
    name="app_api.core.jobs", models=(models,), tasks=(outbox, runner), startup=_start, shutdown=_stop
)
