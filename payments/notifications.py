"""Provider notifications: stored once per provider transaction, applied to the ledger once.

A notification is stored with an upsert on ``(provider, dedupe_key)``; whatever the provider
repeats, an order is credited once and the column is told once (outbox jobs
``payments.notify_column`` and ``payments.notify_columns``, see :mod:`payments.handoff`).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import UTCDateTime, lock_for_writing, utcnow
from app_api.core.jobs import outbox
from app_api.core.logging import request_id_var
from app_api.platform import audit
from payments.ledger import apply_payment, claim_purposes, insert_events, locked_order
from payments.models import NOTIFICATIONS, ORDERS, PENDING, OrderStatus
from payments.providers.base import Notification, NotificationKind, TradeState
from payments.refunds import apply_refund_notification


@dataclass(frozen=True, slots=True)
class NotificationOutcome:
    outcome: str  # applied | duplicate | flagged_amount | unknown_order | ...
    order_id: str | None
    first_seen: bool

    @property
    def acknowledge(self) -> bool:
        """Whether to give the provider its success answer (stop retrying).

        Everything verified is acknowledged, flagged or not: retries would bring the same message
        again. Only failures to process (exceptions) get the failure answer.
        """
        return True


# A text statement because SQLAlchemy cannot cache its ON CONFLICT constructs (they would be compiled
# again for every notification). The same SQL runs on PostgreSQL and SQLite (3.35+). The outcome is
# written as "applied", the common case, and corrected only when it turns out otherwise; a failed
# transaction stores nothing at all.
_UPSERT_NOTIFICATION = sa.text(
    "INSERT INTO payments_notification (id, provider, dedupe_key, kind, out_trade_no, order_id, outcome, "
    "body, headers, times_received, received_at, last_received_at) "
    "VALUES (:id, :provider, :dedupe_key, :kind, :out_trade_no, "
    "(SELECT id FROM payments_order WHERE out_trade_no = :lookup_no), 'applied', :body, :headers, 1, "
    ":now, :now) "
    "ON CONFLICT (provider, dedupe_key) DO UPDATE SET "
    "times_received = payments_notification.times_received + 1, last_received_at = excluded.last_received_at "
    "RETURNING id, times_received, outcome"
).bindparams(sa.bindparam("headers", type_=sa.JSON()), sa.bindparam("now", type_=UTCDateTime()))


async def _store_notification(
    session: AsyncSession, note: Notification, body: bytes, headers: Mapping[str, str]
) -> tuple[str, int, str]:
    """Upsert the raw notification; returns (id, times_received, outcome so far)."""
    keep = {k: v for k, v in headers.items() if k.lower().startswith(("wechatpay-", "content-type"))}
    params = {
        "id": secrets.token_hex(16),
        "provider": note.provider.value,
        "dedupe_key": note.dedupe_key,
        "kind": note.kind.value,
        "out_trade_no": note.out_trade_no,
        "lookup_no": note.out_trade_no,  # a second name: asyncpg types each parameter once
        "body": body.decode("utf-8") if _is_utf8(body) else body.decode("latin-1"),
        "headers": keep,
        "now": utcnow(),
    }
    # On the session's connection (its transaction): a text statement is not one of ``exec``'s overloads.
    conn = await session.connection()
    row = (await conn.execute(_UPSERT_NOTIFICATION, params)).one()
    return str(row[0]), int(row[1]), str(row[2])


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


async def _set_outcome(
    session: AsyncSession, notification_id: str, outcome: str, order_id: str | None
) -> None:
    await session.exec(
        sa.update(NOTIFICATIONS)
        .where(NOTIFICATIONS.c.id == notification_id)
        .values(outcome=outcome, order_id=order_id)
    )


async def apply_notification(
    session: AsyncSession, *, note: Notification, body: bytes, headers: Mapping[str, str]
) -> NotificationOutcome:
    """Store a verified notification once and apply it to the ledger (idempotent)."""
    notification_id, times, _stored_outcome = await _store_notification(session, note, body, headers)
    if times > 1:
        return NotificationOutcome(outcome="duplicate", order_id=None, first_seen=False)
    return await _apply_stored(session, note, notification_id)


async def _apply_stored(
    session: AsyncSession, note: Notification, notification_id: str
) -> NotificationOutcome:
    """Apply a notification stored for the first time (row ``notification_id``)."""
    order = await locked_order(session, out_trade_no=note.out_trade_no)
    if order is None:
        await audit.record(
            session,
            action="payments.notification_flagged",
            subject_type="payments_notification",
            subject_id=notification_id,
            data={
                "reason": "unknown_order",
                "provider": note.provider.value,
                "out_trade_no": note.out_trade_no,
                "amount_fen": note.amount_fen,
            },
        )
        await _set_outcome(session, notification_id, "unknown_order", None)
        return NotificationOutcome(outcome="unknown_order", order_id=None, first_seen=True)
    if note.kind is NotificationKind.REFUND:
        outcome = await apply_refund_notification(session, order, note)
    else:
        outcome = await apply_payment(
            session,
            order,
            source=f"notification:{note.provider.value}",
            provider=note.provider.value,
            txn_id=note.transaction_id,
            amount_fen=note.amount_fen,
            state=note.trade_state,
            paid_at=note.paid_at,
        )
    if outcome != "applied":
        await _set_outcome(session, notification_id, outcome, order.id)
    return NotificationOutcome(outcome=outcome, order_id=order.id, first_seen=True)


@dataclass(frozen=True, slots=True)
class ReceivedNotification:
    """A verified notification waiting in a batch, with what its request carried."""

    note: Notification
    body: bytes
    headers: Mapping[str, str]
    request_id: str | None = None


# The columns the bulk path needs, read with the rows locked (a core statement: no ORM objects).
_LOCK_COLUMNS = (
    ORDERS.c.out_trade_no,
    ORDERS.c.id,
    ORDERS.c.provider,
    ORDERS.c.amount_fen,
    ORDERS.c.status,
    ORDERS.c.purpose_key,
)
# PostgreSQL: one array parameter, so one SQL text (and one prepared statement) for any batch size.
_LOCK_ORDERS_PG = (
    sa.select(*_LOCK_COLUMNS)
    .where(ORDERS.c.out_trade_no == sa.any_(sa.bindparam("numbers", type_=postgresql.ARRAY(sa.String()))))
    .order_by(ORDERS.c.out_trade_no)
    .with_for_update()
)
_LOCK_ORDERS = (
    sa.select(*_LOCK_COLUMNS)
    .where(ORDERS.c.out_trade_no.in_(sa.bindparam("numbers", expanding=True)))
    .order_by(ORDERS.c.out_trade_no)
    .with_for_update()
)
# Compare and set for the whole batch: the rows are locked already, and the status condition keeps a
# bug elsewhere from turning a paid order back. PostgreSQL: one statement whose RETURNING counts the
# rows changed (asyncpg's executemany reports no row counts); SQLite: executemany, counted.
_PAY_ORDERS_PG = sa.text(
    "UPDATE payments_order AS o SET status = 'paid', provider_txn_id = v.txn, paid_at = v.paid_at, "
    "updated_at = :now "
    "FROM json_to_recordset(CAST(CAST(:rows AS text) AS json)) AS v(id text, txn text, paid_at timestamptz) "
    "WHERE o.id = v.id AND o.status IN ('created', 'paying') RETURNING o.id"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))
_PAY_ORDERS = (
    sa.update(ORDERS)
    .where(ORDERS.c.id == sa.bindparam("b_id"), sa.text("status IN ('created', 'paying')"))
    .values(
        status=OrderStatus.PAID.value,
        provider_txn_id=sa.bindparam("b_txn"),
        paid_at=sa.bindparam("b_paid_at", type_=UTCDateTime()),
        updated_at=sa.bindparam("b_now", type_=UTCDateTime()),
    )
)
_PENDING_VALUES = frozenset(s.value for s in PENDING)


def _utc_iso(value: dt.datetime) -> str:
    if value.tzinfo is None:  # as UTCDateTime refuses them
        raise ValueError("naive datetime stored; use timezone-aware datetimes")
    return value.astimezone(dt.UTC).isoformat()


async def apply_notifications(
    session: AsyncSession, items: Sequence[ReceivedNotification]
) -> list[NotificationOutcome]:
    """Store and apply several verified notifications in one transaction (group commit).

    The same ledger rules as ``apply_notification``, in a handful of statements for the whole batch
    instead of a dozen per notification. The common case (a payment for a pending order, amount and
    provider as expected, its purpose not paid by another order) is applied here in bulk with core
    statements; every other case goes through the one-at-a-time path, inside the same transaction.
    Dedupe keys must be distinct within a batch (the batcher holds repeats back for the next one).
    """
    if len({it.note.dedupe_key for it in items}) != len(items):
        raise ValueError("a batch holds each notification once")
    # Orders first, locked in a stable order (two batches never wait on each other in a cycle);
    # on SQLite the write lock comes first, or the orders' states could be read before a commit.
    await lock_for_writing(session)
    conn = await session.connection()
    pg = conn.dialect.name == "postgresql"
    numbers = sorted({it.note.out_trade_no for it in items})
    result = await conn.execute(_LOCK_ORDERS_PG if pg else _LOCK_ORDERS, {"numbers": numbers})
    orders: dict[str, sa.Row[Any]] = {row.out_trade_no: row for row in result}
    stored = await _store_notifications(session, items, orders, pg=pg)
    per_order: dict[str, int] = {}
    for it in items:
        per_order[it.note.out_trade_no] = per_order.get(it.note.out_trade_no, 0) + 1

    outcomes: list[NotificationOutcome | None] = [None] * len(items)
    fast: list[tuple[int, ReceivedNotification, sa.Row[Any]]] = []
    slow: list[tuple[int, ReceivedNotification]] = []
    for i, it in enumerate(items):
        if stored[it.note.dedupe_key][1] > 1:
            outcomes[i] = NotificationOutcome(outcome="duplicate", order_id=None, first_seen=False)
            continue
        order = orders.get(it.note.out_trade_no)
        note = it.note
        if (
            order is not None
            and per_order[note.out_trade_no] == 1
            and note.kind is NotificationKind.PAYMENT
            and note.provider.value == order.provider
            and note.trade_state is TradeState.PAID
            and note.amount_fen == order.amount_fen
            and order.status in _PENDING_VALUES
        ):
            fast.append((i, it, order))
        else:
            slow.append((i, it))
    # Two payments for one purpose are flagged by the one-at-a-time path: claim each purpose for its
    # order first; a purpose already claimed (or twice in this batch) sends its order there.
    keys = [order.purpose_key for _, _, order in fast]
    repeated = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    claimed = await claim_purposes(
        session, [(order.purpose_key, order.id) for _, _, order in fast if order.purpose_key not in repeated]
    )
    now = utcnow()
    events: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for i, it, order in fast:
        if order.purpose_key not in claimed:
            slow.append((i, it))
            continue
        note, source = it.note, f"notification:{it.note.provider.value}"
        updates.append(
            {"b_id": order.id, "b_txn": note.transaction_id, "b_paid_at": note.paid_at or now, "b_now": now}
        )
        events.append(
            {
                "order_id": order.id,
                "kind": "transition",
                "from_status": order.status,
                "to_status": OrderStatus.PAID.value,
                "source": source,
                "data": {"txn": note.transaction_id, "amount_fen": note.amount_fen, "late": False},
            }
        )
        token = request_id_var.set(it.request_id)
        try:
            await audit.record(
                session,
                action=f"payments.order_{OrderStatus.PAID.value}",
                subject_type="payments_order",
                subject_id=order.id,
                data={"from": order.status, "source": source, "amount_fen": order.amount_fen},
            )
        finally:
            request_id_var.reset(token)
        outcomes[i] = NotificationOutcome(outcome="applied", order_id=order.id, first_seen=True)
    if updates:
        if pg:
            paid_rows = json.dumps(
                [{"id": u["b_id"], "txn": u["b_txn"], "paid_at": _utc_iso(u["b_paid_at"])} for u in updates]
            )
            changed = len((await conn.execute(_PAY_ORDERS_PG, {"rows": paid_rows, "now": now})).all())
        else:
            changed = (await conn.execute(_PAY_ORDERS, updates)).rowcount
        if changed != len(updates):  # impossible with the rows locked; never credit on a doubt
            raise RuntimeError(f"paid {changed} of {len(updates)} locked pending orders")
        await insert_events(session, events, now=now)
        # One job tells the columns about the whole batch (each order still exactly once).
        await outbox.enqueue(session, "payments.notify_columns", order_ids=[e["order_id"] for e in events])
    for i, it in sorted(slow, key=lambda pair: pair[0]):
        token = request_id_var.set(it.request_id)
        try:
            outcomes[i] = await _apply_stored(session, it.note, stored[it.note.dedupe_key][0])
        finally:
            request_id_var.reset(token)
    return [o for o in outcomes if o is not None]


# PostgreSQL: the batch's rows as one JSON parameter; one cached statement for any batch size.
_STORE_NOTIFICATIONS_PG = sa.text(
    "INSERT INTO payments_notification (id, provider, dedupe_key, kind, out_trade_no, order_id, outcome, "
    "body, headers, times_received, received_at, last_received_at) "
    "SELECT v.id, v.provider, v.dedupe_key, v.kind, v.out_trade_no, v.order_id, 'applied', v.body, "
    "v.headers, 1, :now, :now "
    "FROM json_to_recordset(CAST(CAST(:rows AS text) AS json)) AS v(id text, provider text, "
    "dedupe_key text, kind text, out_trade_no text, order_id text, body text, headers json) "
    "ON CONFLICT (provider, dedupe_key) DO UPDATE SET "
    "times_received = payments_notification.times_received + 1, last_received_at = excluded.last_received_at "
    "RETURNING dedupe_key, id, times_received"
).bindparams(sa.bindparam("now", type_=UTCDateTime()))


async def _store_notifications(
    session: AsyncSession,
    items: Sequence[ReceivedNotification],
    orders: Mapping[str, sa.Row[Any]],
    *,
    pg: bool,
) -> dict[str, tuple[str, int]]:
    """Upsert the batch's raw notifications in one statement: dedupe key -> (id, times received)."""
    now = utcnow()
    rows = []
    for it in items:
        keep = {k: v for k, v in it.headers.items() if k.lower().startswith(("wechatpay-", "content-type"))}
        order = orders.get(it.note.out_trade_no)
        rows.append(
            {
                "id": secrets.token_hex(16),
                "provider": it.note.provider.value,
                "dedupe_key": it.note.dedupe_key,
                "kind": it.note.kind.value,
                "out_trade_no": it.note.out_trade_no,
                "order_id": order.id if order is not None else None,
                "body": it.body.decode("utf-8") if _is_utf8(it.body) else it.body.decode("latin-1"),
                "headers": keep,
            }
        )
    conn = await session.connection()
    if pg:
        result = await conn.execute(_STORE_NOTIFICATIONS_PG, {"rows": json.dumps(rows), "now": now})
        return {str(key): (str(id_), int(times)) for key, id_, times in result.all()}
    table = NOTIFICATIONS
    insert = sqlite_insert(table)
    stmt = (
        insert.values(
            [
                {
                    **row,
                    "outcome": "applied",
                    "times_received": 1,
                    "received_at": now,
                    "last_received_at": now,
                }
                for row in rows
            ]
        )
        .on_conflict_do_update(
            index_elements=[table.c.provider, table.c.dedupe_key],
            set_={
                "times_received": table.c.times_received + 1,
                "last_received_at": insert.excluded.last_received_at,
            },
        )
        .returning(table.c.dedupe_key, table.c.id, table.c.times_received)
    )
    result = await conn.execute(stmt)
    return {str(key): (str(id_), int(times)) for key, id_, times in result.all()}


async def flag_foreign_notification(session: AsyncSession, *, provider: str, detail: str) -> None:
    """A correctly signed notification for another app or merchant: nothing stored, audited."""
    await audit.record(
        session,
        action="payments.notification_flagged",
        subject_type="payments_notification",
        data={"reason": "foreign_merchant", "provider": provider, "detail": detail[:200]},
    )
