"""The ledger's core: an order's state machine and event log, and the one place an order is paid.

Services take the session plus keyword-only arguments and only ``flush()``. Concurrency: every
change to an order happens with the order row locked (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite, :func:`locked_order` first takes the database write lock with ``BEGIN IMMEDIATE``, see
:func:`app_api.core.db.lock_for_writing`). Paths that call a provider read the order, call it, and
only then lock and read the order again: nothing holds SQLite's write lock during a network call.
Orders (:mod:`payments.orders`), notifications
(:mod:`payments.notifications`), refunds (:mod:`payments.refunds`) and sweeps
(:mod:`payments.sweeps`) change orders through this module only; :mod:`payments.handoff` tells
the columns.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import china_now
from app_api.core.db import UTCDateTime, lock_for_writing, new_id, utcnow
from app_api.core.jobs import outbox
from app_api.platform import audit
from payments.errors import IllegalTransition
from payments.models import (
    EVENTS,
    PAID_LIKE,
    PENDING,
    PURPOSES_PAID,
    TRANSITIONS,
    OrderStatus,
    PaymentOrder,
    PurposePaid,
)
from payments.providers.base import TradeState

log = logging.getLogger(__name__)


def purpose_key(purpose: str, purpose_ref: str) -> str:
    return hashlib.sha256(f"{purpose}\x00{purpose_ref}".encode()).hexdigest()[:64]


def new_out_trade_no() -> str:
    # 32 characters at most at every provider; China-time date first helps people reading bills.
    return "WJ" + china_now().strftime("%y%m%d%H%M%S") + secrets.token_hex(6).upper()


async def locked_order(
    session: AsyncSession, *, order_id: str | None = None, out_trade_no: str | None = None
) -> PaymentOrder | None:
    """The order, locked for this transaction (re-read if already loaded)."""
    await lock_for_writing(session)
    stmt = select(PaymentOrder).with_for_update()
    if order_id is not None:
        stmt = stmt.where(PaymentOrder.id == order_id)
    else:
        stmt = stmt.where(PaymentOrder.out_trade_no == out_trade_no)
    # populate_existing: a row already in the identity map is re-read under the lock.
    result = await session.exec(stmt.execution_options(populate_existing=True))
    return result.first()


async def event_for(
    session: AsyncSession,
    order_id: str,
    *,
    kind: str,
    source: str,
    from_status: str | None = None,
    to_status: str | None = None,
    actor_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    # A core INSERT: events are never read back in the same transaction, and skipping the ORM's
    # unit of work here is a measurable share of a notification's cost.
    await session.exec(
        sa.insert(EVENTS).values(
            id=new_id(),
            order_id=order_id,
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            actor_id=actor_id,
            source=source,
            data=data or {},
            created_at=utcnow(),
        )
    )


async def transition(
    session: AsyncSession,
    order: PaymentOrder,
    to: OrderStatus,
    *,
    source: str,
    actor_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Move ``order`` to ``to`` if the state machine allows it; append the event; audit it."""
    current = OrderStatus(order.status)
    if to not in TRANSITIONS[current]:
        await event_for(
            session,
            order.id,
            kind="refused_transition",
            source=source,
            from_status=current,
            to_status=to,
            actor_id=actor_id,
            data=data,
        )
        raise IllegalTransition(
            f"订单状态为「{current.value}」，不能变为「{to.value}」", order_id=order.id, status=current.value
        )
    order.status = to.value
    order.updated_at = utcnow()
    session.add(order)
    await event_for(
        session,
        order.id,
        kind="transition",
        source=source,
        from_status=current,
        to_status=to,
        actor_id=actor_id,
        data=data,
    )
    await audit.record(
        session,
        action=f"payments.order_{to.value}",
        actor_id=actor_id,
        subject_type="payments_order",
        subject_id=order.id,
        data={"from": current.value, "source": source, "amount_fen": order.amount_fen},
    )


async def flag(
    session: AsyncSession, order: PaymentOrder, reason: str, source: str, data: dict[str, Any]
) -> str:
    await event_for(session, order.id, kind="flagged", source=source, data={"reason": reason, **data})
    await audit.record(
        session,
        action="payments.notification_flagged",
        subject_type="payments_order",
        subject_id=order.id,
        data={"reason": reason, **data},
    )
    log.warning("payments: order %s flagged (%s) %s", order.id, reason, data)
    return f"flagged_{reason}"


async def apply_payment(
    session: AsyncSession,
    order: PaymentOrder,
    *,
    source: str,
    provider: str,
    txn_id: str | None,
    amount_fen: int | None,
    state: TradeState,
    paid_at: dt.datetime | None,
) -> str:
    """The one place an order becomes paid. ``order`` is locked."""
    if provider != order.provider:
        return await flag(session, order, "provider", source, {"provider": provider})
    if state is TradeState.FAILED:
        if OrderStatus(order.status) in PENDING:
            await transition(session, order, OrderStatus.FAILED, source=source, data={"txn": txn_id})
            return "failed"
        return "ignored"
    if state not in (TradeState.PAID, TradeState.REFUNDED):
        return "ignored"
    if amount_fen != order.amount_fen:
        return await flag(
            session,
            order,
            "amount",
            source,
            {"expected_fen": order.amount_fen, "notified_fen": amount_fen, "txn": txn_id},
        )
    if OrderStatus(order.status) in PAID_LIKE:
        if order.provider_txn_id == txn_id:
            return "duplicate"
        return await flag(
            session, order, "second_transaction", source, {"txn": txn_id, "known_txn": order.provider_txn_id}
        )
    late = OrderStatus(order.status) in (OrderStatus.CLOSED, OrderStatus.FAILED)
    order.provider_txn_id = txn_id
    order.paid_at = paid_at or utcnow()
    await transition(
        session,
        order,
        OrderStatus.PAID,
        source=source,
        data={"txn": txn_id, "amount_fen": amount_fen, "late": late},
    )
    await outbox.enqueue(session, "payments.notify_column", order_id=order.id)
    # Two payments for one purpose: both are real money; flag for finance (reconciliation lists it too).
    if not await claim_purposes(session, [(order.purpose_key, order.id)]):
        first = (
            await session.exec(
                select(PurposePaid.order_id).where(PurposePaid.purpose_key == order.purpose_key)
            )
        ).one()
        if first != order.id:
            order.duplicate_of = first
            await flag(session, order, "duplicate_purpose", source, {"other_order_id": first})
            return "applied_duplicate_purpose"
    return "applied_late" if late else "applied"


# PostgreSQL: one cached text statement for any number of rows (SQLAlchemy compiles its ON CONFLICT
# constructs again on every call, and a multi-row VALUES differs with every batch size).
# PostgreSQL: a batch of events as one JSON parameter (one cached statement for any batch size, and
# one JSON encoding instead of a bound-parameter round per row and column).
_INSERT_EVENTS_PG = sa.text(
    "INSERT INTO payments_event (id, order_id, kind, from_status, to_status, actor_id, source, data, "
    "created_at) SELECT v.id, v.order_id, v.kind, v.from_status, v.to_status, v.actor_id, v.source, "
    "v.data, :now FROM json_to_recordset(CAST(CAST(:rows AS text) AS json)) AS v(id text, order_id text, "
    "kind text, from_status text, to_status text, actor_id text, source text, data json)"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))
_EVENT_FIELDS = ("order_id", "kind", "from_status", "to_status", "actor_id", "source", "data")


async def insert_events(session: AsyncSession, events: Sequence[dict[str, Any]], *, now: dt.datetime) -> None:
    """Append several events created at ``now`` in one statement.

    Each event gives ``order_id``, ``kind``, ``source`` and optionally ``from_status``,
    ``to_status``, ``actor_id`` and ``data``; ids are made here.
    """
    if not events:
        return
    rows = [{"id": new_id(), **{f: e.get(f) for f in _EVENT_FIELDS}} for e in events]
    for row in rows:
        if row["data"] is None:
            row["data"] = {}
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        await conn.execute(_INSERT_EVENTS_PG, {"rows": json.dumps(rows), "now": now})
        return
    await conn.execute(sa.insert(EVENTS), [{**row, "created_at": now} for row in rows])


_CLAIM_PURPOSES_PG = sa.text(
    "INSERT INTO payments_purpose_paid (purpose_key, order_id, created_at) "
    "SELECT v.k, v.o, :now FROM json_to_recordset(CAST(CAST(:rows AS text) AS json)) AS v(k text, o text) "
    "ORDER BY v.k ON CONFLICT (purpose_key) DO NOTHING RETURNING purpose_key"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


async def claim_purposes(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> set[str]:
    """Record each (purpose key, order id) as its purpose's first payment; return the keys claimed.

    A key another order holds is not claimed. Under concurrency the primary key decides: the second
    inserter waits for the first to commit, then finds its row. Rows go in key order, so two batches
    never wait on each other in a cycle.
    """
    if not pairs:
        return set()
    now = utcnow()
    conn = await session.connection()
    if conn.dialect.name == "postgresql":
        rows = json.dumps([{"k": k, "o": o} for k, o in pairs])
        result = await conn.execute(_CLAIM_PURPOSES_PG, {"rows": rows, "now": now})
        return {str(k) for k in result.scalars().all()}
    table = PURPOSES_PAID
    stmt = (
        sqlite_insert(table)
        .values([{"purpose_key": k, "order_id": o, "created_at": now} for k, o in sorted(pairs)])
        .on_conflict_do_nothing(index_elements=[table.c.purpose_key])
        .returning(table.c.purpose_key)
    )
    return {str(k) for k in (await session.exec(stmt)).scalars().all()}
