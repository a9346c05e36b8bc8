"""The jobs loop: the schedules' ticks every second and the outbox relay every few seconds.

It runs in every worker process and in ``wojia scheduler``, and inside the api process in the
embedded default (``make run``). Both halves are safe to run in many processes at once (see
``schedules`` and ``outbox.relay``). An outage of the database or the broker is logged (once per
outage) and waited out; the loop never stops by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app_api.core.jobs import outbox, schedules
from app_api.core.jobs.settings import get_jobs_settings

log = logging.getLogger(__name__)


class JobsLoop:
    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._synced = False
        self._failing: str | None = None

    async def step(self) -> None:
        """One round: sync the schedules (until it succeeded once), tick, and relay when it is time."""
        if not self._synced:
            await schedules.sync()
            self._synced = True
        await schedules.tick()

    async def run(self) -> None:
        s = get_jobs_settings()
        next_relay = 0.0
        while True:
            try:
                await self.step()
                if time.monotonic() >= next_relay:
                    await outbox.relay()
                    next_relay = time.monotonic() + s.relay_every_s
                if self._failing is not None:
                    log.warning("jobs loop: recovered")
                    self._failing = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if self._failing is None:
                    log.warning("jobs loop: %s; trying again every %.0f s", reason, s.tick_every_s)
                self._failing = reason
            await asyncio.sleep(s.tick_every_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="wojia-jobs-loop")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await outbox.flush_marks()


loop = JobsLoop()
