"""Sweeps, the last line of defence of every hand-off (run every few minutes by ``payments.tasks``).

- Orders still pending after a while are asked about at their provider, credited or closed.
- Orders paid a while ago whose column was never told (the job was lost: Redis wiped, a worker
  killed, the job gave up) are handed to their column, exactly once (``payments.handoff``).
- Refunds still ``requested`` after a while are (re)submitted under the same refund number (the
  provider's idempotency key); refunds still ``processing`` are asked about at the provider.

Each order or refund is handled in a transaction of its own: one that fails is logged and counted,
and the others go on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from payments import handoff, refunds
from payments.hooks import paid_handler
from payments.ledger import apply_payment, locked_order, transition
from payments.models import PAID_LIKE, PENDING, OrderStatus, PaymentOrder, PaymentRefund, RefundStatus
from payments.providers.base import ProviderError, TradeState, TradeStatus
from payments.registry import get_provider

log = logging.getLogger(__name__)


async def sweep_order(session: AsyncSession, *, order_id: str) -> str:
    """Ask the provider about one pending order; credit it, or close it if it expired unpaid.

    Read, ask the provider, then lock and read again: no write lock is held during a network call,
    and nothing is applied to a state another transaction changed meanwhile (a notification).
    """
    order = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).first()
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    provider = get_provider(order.provider)
    status = await provider.query(order.out_trade_no)
    if status.state in (TradeState.PAID, TradeState.REFUNDED):
        return await _apply_swept(session, order_id, status, TradeState.PAID)
    if order.expires_at > utcnow():
        return "waiting"
    if status.state in (TradeState.NOT_PAID, TradeState.PAYING):
        try:
            await provider.close(order.out_trade_no)
        except ProviderError as exc:
            if exc.code != "ORDERPAID":
                raise
            again = await provider.query(order.out_trade_no)
            return await _apply_swept(session, order_id, again, again.state)
    locked = await locked_order(session, order_id=order_id)
    if locked is None or OrderStatus(locked.status) not in PENDING:
        return "settled"
    locked.closed_at = utcnow()
    await transition(
        session, locked, OrderStatus.CLOSED, source="sweep", data={"provider_state": status.state.value}
    )
    return "closed"


async def _apply_swept(session: AsyncSession, order_id: str, status: TradeStatus, state: TradeState) -> str:
    order = await locked_order(session, order_id=order_id)
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    return await apply_payment(
        session,
        order,
        source="sweep",
        provider=order.provider,
        txn_id=status.transaction_id,
        amount_fen=status.amount_fen,
        state=state,
        paid_at=status.paid_at,
    )


async def pending_order_ids(session: AsyncSession, *, older_than: dt.datetime, limit: int = 500) -> list[str]:
    rows = await session.exec(
        select(PaymentOrder.id)
        .where(col(PaymentOrder.status).in_([s.value for s in PENDING]), PaymentOrder.created_at < older_than)
        .order_by(col(PaymentOrder.created_at))
        .limit(limit)
    )
    return list(rows.all())


# -- paid, column never told -----------------------------------------------------------------------


async def unnotified_paid_order_ids(
    session: AsyncSession, *, paid_before: dt.datetime, limit: int
) -> list[str]:
    """Paid orders (oldest payment first) whose column was never told and whose purpose has a handler.

    Purposes without a handler (a column not installed) are left out, so they never fill the batch.
    """
    unnotified = (
        col(PaymentOrder.status).in_([s.value for s in PAID_LIKE]),
        col(PaymentOrder.column_notified_at).is_(None),
        col(PaymentOrder.paid_at).is_not(None),  # with the line above: ix_payments_order_unnotified
        col(PaymentOrder.paid_at) < paid_before,
    )
    purposes = (await session.exec(select(PaymentOrder.purpose).where(*unnotified).distinct())).all()
    handled = sorted(p for p in purposes if paid_handler(p) is not None)
    if not handled:
        return []
    rows = await session.exec(
        select(PaymentOrder.id)
        .where(*unnotified, col(PaymentOrder.purpose).in_(handled))
        .order_by(col(PaymentOrder.paid_at), col(PaymentOrder.id))
        .limit(limit)
    )
    return list(rows.all())


async def sweep_handoffs(*, older_than_s: int, limit: int, budget_s: float = 40.0) -> dict[str, int]:
    """Tell the columns of orders paid more than ``older_than_s`` ago and never told.

    Through the same claim as the outbox job (``handoff.notify_column``): an order's column is told
    once whether the job, this sweep or two sweeps at the same moment get there. Counts: ``told``
    (now, by this sweep), ``already`` (someone else got there first), ``failed`` (the handler
    raised; retried at the next run), ``left`` (out of time: the next run takes them).
    """
    async with session_scope() as session:
        ids = await unnotified_paid_order_ids(
            session, paid_before=utcnow() - dt.timedelta(seconds=older_than_s), limit=limit
        )
    counts = {"told": 0, "already": 0, "failed": 0, "left": 0}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    for n, order_id in enumerate(ids):
        if loop.time() > deadline:
            counts["left"] = len(ids) - n  # for the next run
            break
        try:
            async with session_scope() as session:
                told = await handoff.notify_column(session, order_id=order_id, source="sweep")
        except Exception:
            log.exception("payments sweep: telling the column of paid order %s failed", order_id)
            counts["failed"] += 1
        else:
            counts["told" if told else "already"] += 1
    if counts["told"] or counts["failed"]:
        log.warning(
            "payments sweep: %d paid orders had not been handed to their column: %d told now, %d failed",
            len(ids),
            counts["told"],
            counts["failed"],
        )
    return counts


# -- refunds not submitted, or submitted and never settled -----------------------------------------


async def due_refunds(
    session: AsyncSession, *, requested_before: dt.datetime, processing_before: dt.datetime, limit: int
) -> list[tuple[str, str, str]]:
    """(refund id, status, provider) of refunds to submit or ask about, oldest first."""
    rows = await session.exec(
        select(PaymentRefund.id, PaymentRefund.status, PaymentOrder.provider)
        .join(PaymentOrder, col(PaymentOrder.id) == col(PaymentRefund.order_id))
        .where(
            # The first term is ix_payments_refund_open's condition, for the planner to match.
            col(PaymentRefund.status).in_([RefundStatus.REQUESTED.value, RefundStatus.PROCESSING.value]),
            sa.or_(
                sa.and_(
                    col(PaymentRefund.status) == RefundStatus.REQUESTED.value,
                    col(PaymentRefund.created_at) < requested_before,
                ),
                sa.and_(
                    col(PaymentRefund.status) == RefundStatus.PROCESSING.value,
                    col(PaymentRefund.created_at) < processing_before,
                ),
            ),
        )
        .order_by(col(PaymentRefund.created_at), col(PaymentRefund.id))
        .limit(limit)
    )
    return [(r[0], r[1], r[2]) for r in rows.all()]


async def sweep_refunds(
    *, submit_after_s: int, query_after_s: int, limit: int, budget_s: float = 40.0
) -> dict[str, int]:
    """Submit refunds left ``requested`` (the job was lost or gave up while the provider was down),
    and ask the provider about refunds left ``processing`` (their notification never came).

    Counts by outcome: ``succeeded``, ``processing``, ``failed`` (the provider refused: the refund
    is ``failed`` for finance), ``done`` (settled meanwhile), ``provider_error`` (unreachable or a
    server error: ``last_error`` is recorded and the next run tries again), ``error`` (anything else),
    ``provider_down`` (not tried: its provider was unreachable earlier in this run, so an outage
    costs one timeout per provider, not one per refund), ``left`` (out of time: the next run).
    """
    now = utcnow()
    async with session_scope() as session:
        due = await due_refunds(
            session,
            requested_before=now - dt.timedelta(seconds=submit_after_s),
            processing_before=now - dt.timedelta(seconds=query_after_s),
            limit=limit,
        )
    counts: dict[str, int] = {}
    down: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    for n, (refund_id, status, provider) in enumerate(due):
        if loop.time() > deadline:
            counts["left"] = len(due) - n
            break
        if provider in down:
            counts["provider_down"] = counts.get("provider_down", 0) + 1
            continue
        try:
            async with session_scope() as session:
                if status == RefundStatus.REQUESTED:
                    outcome = await refunds.submit_refund(session, refund_id=refund_id)
                else:
                    outcome = await refunds.query_refund(session, refund_id=refund_id)
        except ProviderError as exc:
            log.warning("payments sweep: refund %s: provider error %s", refund_id, exc)
            outcome = "provider_error"
            if exc.retryable:
                down.add(provider)
            try:
                async with session_scope() as session:
                    await refunds.note_refund_error(session, refund_id=refund_id, error=str(exc))
            except Exception:
                log.exception("payments sweep: recording the error of refund %s failed", refund_id)
        except Exception:
            log.exception("payments sweep: refund %s failed", refund_id)
            outcome = "error"
        counts[outcome] = counts.get(outcome, 0) + 1
    if due:
        log.info("payments sweep: %d refunds swept: %s", len(due), counts)
    return counts
