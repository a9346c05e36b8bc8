"""The notification jobs: deliver one message after commit, and the minute's sweep of what is due."""

from __future__ import annotations

import asyncio
import logging

from app_api.core.jobs import broker
from app_api.platform.notify.delivery import deliver_now, due
from app_api.platform.notify.settings import get_notify_settings

log = logging.getLogger(__name__)


@broker.task(task_name="app.notify_deliver")
async def deliver(notification_id: str, outbox_id: str | None = None) -> str:
    return await deliver_now(notification_id)


@broker.task(task_name="app.notify_sweep", schedule=[{"cron": "* * * * *"}])
async def sweep() -> dict[str, int]:
    """Deliver what is due: retries whose backoff passed, messages held for quiet hours, and any
    message whose outbox job was lost. Runs every minute.

    A minute's tick is skipped while the previous sweep still runs, so a sweep stops taking new
    messages after ``sweep_budget_s`` (a WeChat outage makes every call wait for its timeout): what is
    left ("left") is the next minute's, longest overdue first, and retries stay on time."""
    s = get_notify_settings()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + s.sweep_budget_s
    ids = await due()
    gate = asyncio.Semaphore(s.sweep_concurrency)
    counts: dict[str, int] = {}

    async def one(nid: str) -> None:
        async with gate:
            if loop.time() >= deadline:
                status = "left"
            else:
                try:
                    status = await deliver_now(nid)
                except Exception:
                    log.exception("notification %s: delivery crashed", nid)
                    status = "error"
            counts[status] = counts.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in ids))
    return counts
