"""Telling a column that its purpose was paid: each paid order's handler runs exactly once.

The outbox jobs ``payments.notify_column`` (one order) and ``payments.notify_columns`` (a batch)
call in here; the handlers are the ones columns register with :func:`payments.hooks.on_paid`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import UTCDateTime, savepoint, utcnow
from app_api.core.jobs import outbox
from payments.hooks import PaidPurpose, paid_handler
from payments.ledger import event_for, insert_events
from payments.models import ORDERS, PAID_LIKE

log = logging.getLogger(__name__)


# The table, not the ORM entity: an ORM-enabled UPDATE re-evaluates the session's identity map on
# every call, which cost more than the statement itself. Built once: its compiled form is cached.
_CLAIM_COLUMNS = (
    sa.update(ORDERS)
    .where(
        ORDERS.c.id.in_(sa.bindparam("order_ids", expanding=True)),
        ORDERS.c.column_notified_at.is_(None),
        ORDERS.c.status.in_([s.value for s in PAID_LIKE]),
    )
    .values(column_notified_at=sa.bindparam("now", type_=UTCDateTime()))
    .returning(
        ORDERS.c.id,
        ORDERS.c.out_trade_no,
        ORDERS.c.account_id,
        ORDERS.c.purpose,
        ORDERS.c.purpose_ref,
        ORDERS.c.amount_fen,
        ORDERS.c.provider,
        ORDERS.c.paid_at,
    )
)


async def _claim_for_columns(session: AsyncSession, order_ids: Sequence[str]) -> list[PaidPurpose]:
    """Mark paid orders whose column has not been told as told; return what their handlers need.

    Claim first, with a write: the rows stay locked until commit (PostgreSQL), the database is
    locked for writers (SQLite), and a concurrent or repeated job finds nothing left to claim. If a
    handler fails, its claim is rolled back or released and the job retries.
    """
    conn = await session.connection()
    rows = (await conn.execute(_CLAIM_COLUMNS, {"order_ids": list(order_ids), "now": utcnow()})).all()
    return [
        PaidPurpose(
            order_id=r[0],
            out_trade_no=r[1],
            account_id=r[2],
            purpose=r[3],
            purpose_ref=r[4],
            amount_fen=r[5],
            provider=r[6],
            paid_at=r[7],
        )
        for r in sorted(rows)
    ]


async def notify_column(session: AsyncSession, *, order_id: str, source: str = "outbox") -> bool:
    """Run the purpose's paid handler once; True if it ran now.

    Called by the outbox job and by the sweep (``source="sweep"``, see :mod:`payments.sweeps`); the
    claim decides which of them (or of two sweeps) tells the column, whichever comes first.
    """
    claimed = await _claim_for_columns(session, [order_id])
    if not claimed:
        return False
    paid = claimed[0]
    handler = paid_handler(paid.purpose)
    if handler is None:
        # A column that is not installed (yet): fail so the job retries and the relay keeps it.
        raise LookupError(f"no paid handler for purpose {paid.purpose!r}")
    await handler(session, paid)
    await event_for(session, order_id, kind="column_notified", source=source, data={"purpose": paid.purpose})
    return True


async def notify_columns(session: AsyncSession, *, order_ids: Sequence[str]) -> list[str]:
    """``notify_column`` for several orders in one transaction; returns the ids told now.

    Each handler runs in its own savepoint. An order whose handler fails (or whose column is not
    installed) is released and handed to a ``payments.notify_column`` job of its own, which retries
    it alone; the others are not held back by it.
    """
    claimed = await _claim_for_columns(session, order_ids)
    told: list[str] = []
    failed: list[str] = []
    for paid in claimed:
        handler = paid_handler(paid.purpose)
        if handler is None:
            failed.append(paid.order_id)
            continue
        try:
            async with savepoint(session):
                await handler(session, paid)
        except Exception:
            log.exception(
                "payments: paid handler of order %s (%s) failed; retried alone", paid.order_id, paid.purpose
            )
            failed.append(paid.order_id)
        else:
            told.append(paid.order_id)
    if failed:
        await session.exec(sa.update(ORDERS).where(ORDERS.c.id.in_(failed)).values(column_notified_at=None))
        for order_id in failed:
            await outbox.enqueue(session, "payments.notify_column", order_id=order_id)
    if told:
        purposes = {paid.order_id: paid.purpose for paid in claimed}
        await insert_events(
            session,
            [
                {
                    "order_id": order_id,
                    "kind": "column_notified",
                    "source": "outbox",
                    "data": {"purpose": purposes[order_id]},
                }
                for order_id in told
            ],
            now=utcnow(),
        )
    return told
