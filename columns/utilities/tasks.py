"""Utilities jobs: tell billers of paid bills (outbox + retry sweep), and due-date reminders."""

from __future__ import annotations

from app_api.core.jobs import broker
from columns.utilities import delivery, reminders


class NoticeHeldElsewhere(Exception):
    """The notice is leased by another delivery: this job tries again after its backoff."""


@broker.task(task_name="utilities.notify_biller")
async def notify_biller(notice_id: str, outbox_id: str | None = None) -> str:
    """First attempt right after the payment; failures are rescheduled by the notice itself.

    A notice leased by another delivery is either being delivered right now, or its deliverer died
    (a worker killed mid-call): the job retries with its backoff instead of finishing, so the notice
    is delivered soon after that lease ends rather than at the next sweep."""
    outcome = await delivery.deliver_notice(notice_id)
    if outcome == "leased":
        raise NoticeHeldElsewhere(f"notice {notice_id} is held by another delivery")
    return outcome


@broker.task(task_name="utilities.retry_biller_notices", schedule=[{"cron": "* * * * *"}])
async def retry_biller_notices() -> dict[str, int]:
    return await delivery.retry_due()


@broker.task(task_name="utilities.due_reminders", schedule=[{"cron": "0 1 * * *"}])  # 09:00 China time
async def due_reminders() -> int:
    return await reminders.send_due_reminders()
