"""Payments jobs (registered through the payments component)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from app_api.core.clock import china_today
from app_api.core.db import session_scope, utcnow
from app_api.core.jobs import broker
from payments import handoff, refunds, sweeps
from payments.config import get_payments_settings
from payments.providers.base import ProviderError

log = logging.getLogger(__name__)


@broker.task(task_name="payments.notify_column", retry_on_error=True, max_retries=20)
async def notify_column(order_id: str, outbox_id: str | None = None) -> bool:
    """Tell the owning column that its purpose was paid (once: see ``payments.hooks``)."""
    async with session_scope() as session:
        return await handoff.notify_column(session, order_id=order_id)


@broker.task(task_name="payments.notify_columns", retry_on_error=True, max_retries=20)
async def notify_columns(order_ids: list[str], outbox_id: str | None = None) -> int:
    """Tell the columns about a batch of paid orders; a failing one is retried by a job of its own."""
    async with session_scope() as session:
        return len(await handoff.notify_columns(session, order_ids=order_ids))


@broker.task(task_name="payments.submit_refund", retry_on_error=True, max_retries=10)
async def submit_refund(refund_id: str, outbox_id: str | None = None) -> str:
    async with session_scope() as session:
        return await refunds.submit_refund(session, refund_id=refund_id)


@broker.task(task_name="payments.sweep_pending", schedule=[{"cron": "*/5 * * * *"}])
async def sweep_pending() -> dict[str, int]:
    """Query orders pending for more than 15 minutes; close expired unpaid ones there and here."""
    settings = get_payments_settings()
    async with session_scope() as session:
        ids = await sweeps.pending_order_ids(
            session, older_than=utcnow() - dt.timedelta(seconds=settings.pending_query_after_s)
        )
    counts: dict[str, int] = {}
    for order_id in ids:
        try:
            async with session_scope() as session:
                outcome = await sweeps.sweep_order(session, order_id=order_id)
        except ProviderError as exc:
            log.warning("payments sweep: order %s: provider error %s", order_id, exc)
            outcome = "provider_error"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


@broker.task(task_name="payments.sweep_handoffs", schedule=[{"cron": "* * * * *"}])
async def sweep_handoffs(older_than_s: int | None = None, limit: int | None = None) -> dict[str, int]:
    """Tell the column of every order paid over a minute ago whose column was never told (the job was
    lost or gave up); once, however this races the job or another sweep."""
    settings = get_payments_settings()
    return await sweeps.sweep_handoffs(
        older_than_s=settings.handoff_sweep_after_s if older_than_s is None else older_than_s,
        limit=limit or settings.handoff_sweep_batch,
        budget_s=settings.sweep_budget_s,
    )


@broker.task(task_name="payments.sweep_refunds", schedule=[{"cron": "* * * * *"}])
async def sweep_refunds(
    submit_after_s: int | None = None, query_after_s: int | None = None, limit: int | None = None
) -> dict[str, int]:
    """(Re)submit refunds left ``requested``, ask about refunds left ``processing``."""
    settings = get_payments_settings()
    return await sweeps.sweep_refunds(
        submit_after_s=settings.refund_submit_after_s if submit_after_s is None else submit_after_s,
        query_after_s=settings.refund_query_after_s if query_after_s is None else query_after_s,
        limit=limit or settings.refund_sweep_batch,
        budget_s=settings.sweep_budget_s,
    )


@broker.task(task_name="payments.reconcile_run", retry_on_error=False)
async def reconcile_run(run_id: str, outbox_id: str | None = None) -> dict[str, Any]:
    from payments.reconciliation.runs import execute_run

    return await execute_run(run_id)


@broker.task(
    task_name="payments.reconcile_daily", schedule=[{"cron": get_payments_settings().reconcile_cron}]
)
async def reconcile_daily(bill_date: str | None = None) -> list[str]:
    """Reconcile every configured provider for yesterday (China time)."""
    from payments.reconciliation.runs import execute_run, start_run
    from payments.registry import get_providers

    day = dt.date.fromisoformat(bill_date) if bill_date else china_today() - dt.timedelta(days=1)
    run_ids = []
    for name in get_providers():
        async with session_scope() as session:
            run = await start_run(session, provider=name, bill_date=day, actor_id=None, enqueue=False)
            run_ids.append(run.id)
        await execute_run(run.id)
    return run_ids
