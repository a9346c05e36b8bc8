"""The assistant's jobs: the expiry sweep of the drafts conditions walk-throughs hand over."""

from __future__ import annotations

from app_api.core.jobs import broker
from bot import drafts


@broker.task(task_name="bot.expire_walkthrough_drafts", schedule=[{"cron": "*/10 * * * *"}])
async def expire_walkthrough_drafts() -> dict[str, int]:
    """Remove the walk-through drafts nobody opened in time (idempotent; see ``bot.drafts``)."""
    return await drafts.sweep()
