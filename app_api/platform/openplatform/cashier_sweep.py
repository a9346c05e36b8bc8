"""The cashier's two sweeps (every minute, scheduled through PostgreSQL like every periodic job):

- ``openplatform.cashier_close_expired``: an order still unpaid at ``expires_at`` is closed and its
  column is owed an ``order.closed`` notice;
- ``openplatform.cashier_refund_notices``: a refund the ledger has finished (``succeeded`` or
  ``failed``) is recorded on the column's refund and its column is owed a ``refund.succeeded`` /
  ``refund.failed`` notice; a failed refund's amount, set aside on the order when the column asked
  for it, is given back (refundable again).

Each change is a compare-and-set on the row (``status = 'created'``, ``settled_at IS NULL``) in the
transaction that writes the notice and its outbox job, so two schedulers, two workers or a rerun
after a crash write it once; the notice goes out through :mod:`.cashier_notify` (signed, retried until
acknowledged). Redis holds nothing of it: a wiped Redis loses wake-ups the relay sends again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from app_api.core.jobs import broker, outbox
from app_api.platform import audit
from app_api.platform.openplatform import cashier, cashier_notify
from app_api.platform.openplatform.cashier_models import CashierNotice, CashierOrder, CashierRefund

BATCH = 200
FINAL = ("succeeded", "failed")


async def _notice(session: AsyncSession, order: CashierOrder, event: str, payload: dict[str, Any]) -> None:
    notice = CashierNotice(column_id=order.column_id, order_id=order.id, event=event, payload=payload)
    session.add(notice)
    await session.flush()
    await outbox.enqueue(session, cashier_notify.TASK, notice_id=notice.id)


async def close_expired(*, now: dt.datetime | None = None) -> int:
    """Close the unpaid orders past their deadline; the number closed by this run."""
    now = now or utcnow()
    closed = 0
    async with session_scope() as session:
        ids = (
            await session.exec(
                select(CashierOrder.id)
                .where(
                    CashierOrder.status == "created",
                    col(CashierOrder.expires_at).is_not(None),
                    col(CashierOrder.expires_at) <= now,
                )
                .order_by(col(CashierOrder.expires_at))
                .limit(BATCH)
            )
        ).all()
        for order_id in ids:
            res = await session.exec(
                sa.update(CashierOrder)
                .where(col(CashierOrder.id) == order_id, col(CashierOrder.status) == "created")
                .values(status="closed", closed_at=now)
            )
            if res.rowcount != 1:
                continue  # paid meanwhile, or another sweep closed it
            order = await session.get(CashierOrder, order_id, populate_existing=True)
            assert order is not None
            await _notice(
                session,
                order,
                "order.closed",
                {
                    "event": "order.closed",
                    "order_id": order.id,
                    "out_order_no": order.out_order_no,
                    "amount_fen": order.amount_fen,
                    "reason": "expired",
                    "expires_at": (order.expires_at or now).astimezone(dt.UTC).isoformat(),
                    "closed_at": now.astimezone(dt.UTC).isoformat(),
                },
            )
            await audit.record(
                session,
                action="openplatform.cashier_order_closed",
                subject_type="external_column",
                subject_id=order.column_id,
                data={"order_id": order.id, "out_order_no": order.out_order_no, "reason": "expired"},
            )
            closed += 1
    return closed


def refund_event(refund_id: str) -> str:
    # One notice per refund of an order (unique on order and event; the event column holds 30).
    return "refund." + refund_id[:23]


async def notify_refunds(*, now: dt.datetime | None = None) -> int:
    """Record the refunds the ledger has finished and owe their columns a notice; the number told."""
    now = now or utcnow()
    told = 0
    async with session_scope() as session:
        rows = list(
            (
                await session.exec(
                    select(CashierRefund)
                    .where(col(CashierRefund.settled_at).is_(None))
                    .order_by(col(CashierRefund.created_at))
                    .limit(BATCH)
                )
            ).all()
        )
        if not rows:
            return 0
        states = await cashier.payments_port().refunds(session, [r.payment_refund_id for r in rows])
        for r in rows:
            state = states.get(r.payment_refund_id)
            if state is None or state.status not in FINAL:
                continue
            res = await session.exec(
                sa.update(CashierRefund)
                .where(col(CashierRefund.id) == r.id, col(CashierRefund.settled_at).is_(None))
                .values(settled_status=state.status, settled_at=now)
            )
            if res.rowcount != 1:
                continue  # another sweep recorded it
            if state.status == "failed":
                # The amount was set aside when the column asked for the refund: it is refundable
                # again (once: only the sweep that recorded the failure gets here).
                await session.exec(
                    sa.update(CashierOrder)
                    .where(col(CashierOrder.id) == r.order_id)
                    .values(
                        refunded_fen=col(CashierOrder.refunded_fen) - r.amount_fen,
                        status=sa.case(
                            (col(CashierOrder.status) == "refunded", "paid"), else_=col(CashierOrder.status)
                        ),
                    )
                )
            order = await session.get(CashierOrder, r.order_id, populate_existing=True)
            assert order is not None
            await _notice(
                session,
                order,
                refund_event(r.id),
                {
                    "event": f"refund.{state.status}",
                    "order_id": order.id,
                    "out_order_no": order.out_order_no,
                    "refund_id": r.id,
                    "out_refund_no": r.out_refund_no,
                    "amount_fen": r.amount_fen,
                    "order_refunded_fen": order.refunded_fen,
                    "settled_at": now.astimezone(dt.UTC).isoformat(),
                },
            )
            await audit.record(
                session,
                action="openplatform.cashier_refund_settled",
                subject_type="external_column",
                subject_id=order.column_id,
                data={"order_id": order.id, "refund_id": r.id, "status": state.status},
            )
            told += 1
    return told


@broker.task(task_name="openplatform.cashier_close_expired", schedule=[{"cron": "* * * * *"}])
async def close_expired_orders() -> int:
    """Close unpaid cashier orders past their deadline and tell their columns (every minute)."""
    return await close_expired()


@broker.task(task_name="openplatform.cashier_refund_notices", schedule=[{"cron": "* * * * *"}])
async def refund_notices() -> int:
    """Tell columns of refunds the ledger has finished (every minute)."""
    return await notify_refunds()
