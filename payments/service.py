"""The ledger: orders, their state machine and event log, notifications, refunds, sweeps.

Services take the session plus keyword-only arguments and only ``flush()``. Concurrency: every
change to an order happens with the order row locked (``SELECT ... FOR UPDATE`` on PostgreSQL;
SQLite serialises writers, and the first statement of a notification is a write so the lock is
held from the start). A notification is stored once per provider transaction with an upsert on
``(provider, dedupe_key)``; whatever the provider repeats, an order is credited once and the column
is told once (outbox job ``payments.notify_column``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import UTCDateTime, new_id, savepoint, utcnow
from app_api.core.jobs import outbox
from app_api.core.logging import request_id_var
from app_api.platform import audit
from payments.config import get_payments_settings
from payments.errors import (
    IllegalTransition,
    OrderNotFound,
    ProviderRefused,
    ProviderUnavailable,
    PurposeAlreadyPaid,
    RefundExceedsPaid,
    RefundNumberConflict,
)
from payments.models import (
    PAID_LIKE,
    PENDING,
    TRANSITIONS,
    OrderStatus,
    PaymentEvent,
    PaymentNotification,
    PaymentOrder,
    PaymentRefund,
    PurposePaid,
    RefundStatus,
)
from payments.providers.base import (
    CHINA_TZ,
    Channel,
    CreatePayment,
    Notification,
    NotificationKind,
    ProviderError,
    RefundRequest,
    RefundState,
    TradeState,
)

log = logging.getLogger(__name__)
if TYPE_CHECKING:
    from payments.hooks import PaidPurpose

_ORDERS: sa.Table = PaymentOrder.__table__  # type: ignore[attr-defined]


def purpose_key(purpose: str, purpose_ref: str) -> str:
    return hashlib.sha256(f"{purpose}\x00{purpose_ref}".encode()).hexdigest()[:64]


def new_out_trade_no() -> str:
    # 32 characters at most at every provider; China-time date first helps people reading bills.
    return "WJ" + dt.datetime.now(CHINA_TZ).strftime("%y%m%d%H%M%S") + secrets.token_hex(6).upper()


async def _locked_order(
    session: AsyncSession, *, order_id: str | None = None, out_trade_no: str | None = None
) -> PaymentOrder | None:
    stmt = select(PaymentOrder).with_for_update()
    if order_id is not None:
        stmt = stmt.where(PaymentOrder.id == order_id)
    else:
        stmt = stmt.where(PaymentOrder.out_trade_no == out_trade_no)
    # populate_existing: a row already in the identity map is re-read under the lock.
    result = await session.exec(stmt.execution_options(populate_existing=True))
    return result.first()


async def _event_for(
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
    await session.exec(  # type: ignore[call-overload]
        sa.insert(PaymentEvent.__table__).values(  # type: ignore[attr-defined]
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
        await _event_for(
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
    await _event_for(
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


# -- orders -------------------------------------------------------------------------------------


async def create_order(
    session: AsyncSession,
    *,
    account_id: str,
    purpose: str,
    purpose_ref: str,
    amount_fen: int,
    description: str,
    provider: str,
    channel: Channel | str,
    ttl_s: int | None = None,
) -> PaymentOrder:
    """Open an order for a column's purpose. Refused when that purpose is already paid."""
    from payments.registry import get_provider

    impl = get_provider(provider)  # refuse an unconfigured provider before anything is written
    if amount_fen <= 0:
        raise IllegalTransition("金额必须大于零")
    key = purpose_key(purpose, purpose_ref)
    paid = await session.exec(
        select(PaymentOrder.id).where(
            PaymentOrder.purpose_key == key, col(PaymentOrder.status).in_([s.value for s in PAID_LIKE])
        )
    )
    if paid.first() is not None:
        raise PurposeAlreadyPaid(purpose=purpose)
    now = utcnow()
    order = PaymentOrder(
        out_trade_no=new_out_trade_no(),
        account_id=account_id,
        purpose=purpose,
        purpose_ref=purpose_ref,
        purpose_key=key,
        description=description[:128],
        amount_fen=amount_fen,
        provider=provider,
        merchant_id=impl.merchant_id,
        channel=Channel(channel).value,
        expires_at=now + dt.timedelta(seconds=ttl_s or get_payments_settings().order_ttl_s),
    )
    session.add(order)
    await session.flush()
    await _event_for(
        session,
        order.id,
        kind="created",
        source=f"column:{purpose.split('.')[0]}",
        to_status="created",
        actor_id=account_id,
        data={"amount_fen": amount_fen},
    )
    await audit.record(
        session,
        action="payments.order_created",
        actor_id=account_id,
        subject_type="payments_order",
        subject_id=order.id,
        data={"purpose": purpose, "amount_fen": amount_fen, "provider": provider},
    )
    return order


@dataclass(frozen=True, slots=True)
class PaymentStart:
    order: PaymentOrder
    client_params: dict[str, str]


async def start_payment(
    session: AsyncSession, *, order: PaymentOrder, payer_id: str | None, client_ip: str
) -> PaymentStart:
    """Place the order at its provider; the client hands ``client_params`` to the wallet."""
    from payments.registry import get_provider, notify_url

    if OrderStatus(order.status) not in PENDING:
        raise IllegalTransition("该订单已支付或已关闭", status=order.status)
    if order.expires_at <= utcnow():
        raise IllegalTransition("订单已过期，请重新下单", status=order.status)
    provider = get_provider(order.provider)
    try:
        created = await provider.create(
            CreatePayment(
                out_trade_no=order.out_trade_no,
                amount_fen=order.amount_fen,
                description=order.description,
                channel=Channel(order.channel),
                notify_url=notify_url(order.provider),
                client_ip=client_ip,
                payer_id=payer_id,
                expire_at=order.expires_at,
            )
        )
    except ProviderError as exc:
        if exc.retryable:
            raise ProviderUnavailable(detail=None, provider=order.provider) from exc
        raise ProviderRefused(str(exc), provider=order.provider, provider_code=exc.code) from exc
    except ValueError as exc:
        raise IllegalTransition(str(exc)) from exc
    locked = await _locked_order(session, order_id=order.id)
    assert locked is not None
    if locked.status == OrderStatus.CREATED:
        await transition(
            session,
            locked,
            OrderStatus.PAYING,
            source="resident",
            actor_id=locked.account_id,
            data={"prepay_id": created.prepay_id},
        )
    return PaymentStart(order=locked, client_params=created.client_params)


# -- notifications ------------------------------------------------------------------------------


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
    row = (await session.exec(_UPSERT_NOTIFICATION, params=params)).one()  # type: ignore[call-overload]
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
    await session.exec(  # type: ignore[call-overload]
        sa.update(PaymentNotification.__table__)  # type: ignore[attr-defined]
        .where(PaymentNotification.__table__.c.id == notification_id)  # type: ignore[attr-defined]
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
    order = await _locked_order(session, out_trade_no=note.out_trade_no)
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
        outcome = await _apply_refund_notification(session, order, note)
    else:
        outcome = await _apply_payment(
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


async def apply_notifications(
    session: AsyncSession, items: Sequence[ReceivedNotification]
) -> list[NotificationOutcome]:
    """Store and apply several verified notifications in one transaction (group commit).

    The same ledger rules as ``apply_notification``, in a handful of statements for the whole batch
    instead of a dozen per notification. The common case (a payment for a pending order, amount and
    provider as expected, its purpose not paid by another order) is applied here in bulk; every
    other case goes through the one-at-a-time path, inside the same transaction. Dedupe keys must be
    distinct within a batch (the batcher holds repeats back for the next one).
    """
    if len({it.note.dedupe_key for it in items}) != len(items):
        raise ValueError("a batch holds each notification once")
    # Orders first, locked in a stable order (two batches never wait on each other in a cycle).
    numbers = sorted({it.note.out_trade_no for it in items})
    orders = {
        o.out_trade_no: o
        for o in (
            await session.exec(
                select(PaymentOrder)
                .where(col(PaymentOrder.out_trade_no).in_(numbers))
                .order_by(col(PaymentOrder.out_trade_no))
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    stored = await _store_notifications(session, items, orders)
    per_order: dict[str, int] = {}
    for it in items:
        per_order[it.note.out_trade_no] = per_order.get(it.note.out_trade_no, 0) + 1

    fresh = [(i, it) for i, it in enumerate(items) if stored[it.note.dedupe_key][1] == 1]
    fast: list[tuple[int, ReceivedNotification, PaymentOrder]] = []
    slow: list[tuple[int, ReceivedNotification]] = []
    for i, it in fresh:
        order = orders.get(it.note.out_trade_no)
        note = it.note
        if (
            order is not None
            and per_order[note.out_trade_no] == 1
            and note.kind is NotificationKind.PAYMENT
            and note.provider.value == order.provider
            and note.trade_state is TradeState.PAID
            and note.amount_fen == order.amount_fen
            and OrderStatus(order.status) in PENDING
        ):
            fast.append((i, it, order))
        else:
            slow.append((i, it))
    # Two payments for one purpose are flagged by the one-at-a-time path: claim each purpose for its
    # order first; a purpose already claimed (or twice in this batch) sends its order there.
    keys = [order.purpose_key for _, _, order in fast]
    repeated = {k for k in keys if keys.count(k) > 1} if len(set(keys)) != len(keys) else set()
    claimed = await _claim_purposes(
        session, [(order.purpose_key, order.id) for _, _, order in fast if order.purpose_key not in repeated]
    )
    outcomes: list[NotificationOutcome | None] = [None] * len(items)
    for i, it in enumerate(items):
        if stored[it.note.dedupe_key][1] > 1:
            outcomes[i] = NotificationOutcome(outcome="duplicate", order_id=None, first_seen=False)
    now = utcnow()
    events: list[dict[str, Any]] = []
    for i, it, order in fast:
        if order.purpose_key not in claimed:
            slow.append((i, it))
            continue
        note, source = it.note, f"notification:{it.note.provider.value}"
        token = request_id_var.set(it.request_id)
        try:
            previous = order.status
            order.provider_txn_id = note.transaction_id
            order.paid_at = note.paid_at or now
            order.status = OrderStatus.PAID.value
            order.updated_at = now
            events.append(
                {
                    "id": new_id(),
                    "order_id": order.id,
                    "kind": "transition",
                    "from_status": previous,
                    "to_status": OrderStatus.PAID.value,
                    "actor_id": None,
                    "source": source,
                    "data": {"txn": note.transaction_id, "amount_fen": note.amount_fen, "late": False},
                    "created_at": now,
                }
            )
            await audit.record(
                session,
                action=f"payments.order_{OrderStatus.PAID.value}",
                subject_type="payments_order",
                subject_id=order.id,
                data={"from": previous, "source": source, "amount_fen": order.amount_fen},
            )
        finally:
            request_id_var.reset(token)
        outcomes[i] = NotificationOutcome(outcome="applied", order_id=order.id, first_seen=True)
    if events:
        await session.exec(sa.insert(PaymentEvent.__table__), params=events)  # type: ignore[call-overload,attr-defined]
        # One job tells the columns about the whole batch (each order still exactly once).
        await outbox.enqueue(session, "payments.notify_columns", order_ids=[e["order_id"] for e in events])
    for i, it in sorted(slow, key=lambda pair: pair[0]):
        token = request_id_var.set(it.request_id)
        try:
            outcomes[i] = await _apply_stored(session, it.note, stored[it.note.dedupe_key][0])
        finally:
            request_id_var.reset(token)
    return [o for o in outcomes if o is not None]


async def _store_notifications(
    session: AsyncSession, items: Sequence[ReceivedNotification], orders: Mapping[str, PaymentOrder]
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
                "outcome": "applied",
                "body": it.body.decode("utf-8") if _is_utf8(it.body) else it.body.decode("latin-1"),
                "headers": keep,
                "times_received": 1,
                "received_at": now,
                "last_received_at": now,
            }
        )
    table = PaymentNotification.__table__  # type: ignore[attr-defined]
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    stmt = (
        insert.values(rows)
        .on_conflict_do_update(
            index_elements=[table.c.provider, table.c.dedupe_key],
            set_={
                "times_received": table.c.times_received + 1,
                "last_received_at": insert.excluded.last_received_at,
            },
        )
        .returning(table.c.dedupe_key, table.c.id, table.c.times_received)
    )
    result = await session.exec(stmt)  # type: ignore[call-overload]
    return {str(key): (str(id_), int(times)) for key, id_, times in result.all()}


async def _flag(
    session: AsyncSession, order: PaymentOrder, reason: str, source: str, data: dict[str, Any]
) -> str:
    await _event_for(session, order.id, kind="flagged", source=source, data={"reason": reason, **data})
    await audit.record(
        session,
        action="payments.notification_flagged",
        subject_type="payments_order",
        subject_id=order.id,
        data={"reason": reason, **data},
    )
    log.warning("payments: order %s flagged (%s) %s", order.id, reason, data)
    return f"flagged_{reason}"


async def _apply_payment(
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
        return await _flag(session, order, "provider", source, {"provider": provider})
    if state is TradeState.FAILED:
        if OrderStatus(order.status) in PENDING:
            await transition(session, order, OrderStatus.FAILED, source=source, data={"txn": txn_id})
            return "failed"
        return "ignored"
    if state not in (TradeState.PAID, TradeState.REFUNDED):
        return "ignored"
    if amount_fen != order.amount_fen:
        return await _flag(
            session,
            order,
            "amount",
            source,
            {"expected_fen": order.amount_fen, "notified_fen": amount_fen, "txn": txn_id},
        )
    if OrderStatus(order.status) in PAID_LIKE:
        if order.provider_txn_id == txn_id:
            return "duplicate"
        return await _flag(
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
    if not await _claim_purposes(session, [(order.purpose_key, order.id)]):
        first = (
            await session.exec(
                select(PurposePaid.order_id).where(PurposePaid.purpose_key == order.purpose_key)
            )
        ).one()
        if first != order.id:
            order.duplicate_of = first
            await _flag(session, order, "duplicate_purpose", source, {"other_order_id": first})
            return "applied_duplicate_purpose"
    return "applied_late" if late else "applied"


async def _claim_purposes(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> set[str]:
    """Record each (purpose key, order id) as its purpose's first payment; return the keys claimed.

    A key another order holds is not claimed. Under concurrency the primary key decides: the second
    inserter waits for the first to commit, then finds its row. Rows go in key order, so two batches
    never wait on each other in a cycle.
    """
    if not pairs:
        return set()
    table = PurposePaid.__table__  # type: ignore[attr-defined]
    dialect = session.bind.dialect.name if session.bind is not None else "postgresql"
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    now = utcnow()
    stmt = (
        insert.values([{"purpose_key": k, "order_id": o, "created_at": now} for k, o in sorted(pairs)])
        .on_conflict_do_nothing(index_elements=[table.c.purpose_key])
        .returning(table.c.purpose_key)
    )
    return {str(k) for k in (await session.exec(stmt)).scalars().all()}  # type: ignore[call-overload]


# -- the column hook ----------------------------------------------------------------------------


async def _claim_for_columns(session: AsyncSession, order_ids: Sequence[str]) -> list[PaidPurpose]:
    """Mark paid orders whose column has not been told as told; return what their handlers need.

    Claim first, with a write: the rows stay locked until commit (PostgreSQL), the database is
    locked for writers (SQLite), and a concurrent or repeated job finds nothing left to claim. If a
    handler fails, its claim is rolled back or released and the job retries.
    """
    from payments.hooks import PaidPurpose

    rows = (
        await session.exec(  # type: ignore[call-overload]
            # The table, not the ORM entity: an ORM-enabled UPDATE re-evaluates the session's
            # identity map on every call, which cost more than the statement itself.
            sa.update(_ORDERS)
            .where(
                _ORDERS.c.id.in_(list(order_ids)),
                _ORDERS.c.column_notified_at.is_(None),
                _ORDERS.c.status.in_([s.value for s in PAID_LIKE]),
            )
            .values(column_notified_at=utcnow())
            .returning(
                _ORDERS.c.id,
                _ORDERS.c.out_trade_no,
                _ORDERS.c.account_id,
                _ORDERS.c.purpose,
                _ORDERS.c.purpose_ref,
                _ORDERS.c.amount_fen,
                _ORDERS.c.provider,
                _ORDERS.c.paid_at,
            )
        )
    ).all()
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


async def notify_column(session: AsyncSession, *, order_id: str) -> bool:
    """Run the purpose's paid handler once; True if it ran now. Called by the outbox job."""
    from payments.hooks import paid_handler

    claimed = await _claim_for_columns(session, [order_id])
    if not claimed:
        return False
    paid = claimed[0]
    handler = paid_handler(paid.purpose)
    if handler is None:
        # A column that is not installed (yet): fail so the job retries and the relay keeps it.
        raise LookupError(f"no paid handler for purpose {paid.purpose!r}")
    await handler(session, paid)
    await _event_for(
        session, order_id, kind="column_notified", source="outbox", data={"purpose": paid.purpose}
    )
    return True


async def notify_columns(session: AsyncSession, *, order_ids: Sequence[str]) -> list[str]:
    """``notify_column`` for several orders in one transaction; returns the ids told now.

    Each handler runs in its own savepoint. An order whose handler fails (or whose column is not
    installed) is released and handed to a ``payments.notify_column`` job of its own, which retries
    it alone; the others are not held back by it.
    """
    from payments.hooks import paid_handler

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
        await session.exec(  # type: ignore[call-overload]
            sa.update(_ORDERS).where(_ORDERS.c.id.in_(failed)).values(column_notified_at=None)
        )
        for order_id in failed:
            await outbox.enqueue(session, "payments.notify_column", order_id=order_id)
    if told:
        now = utcnow()
        purposes = {paid.order_id: paid.purpose for paid in claimed}
        await session.exec(  # type: ignore[call-overload]
            sa.insert(PaymentEvent.__table__),  # type: ignore[attr-defined]
            params=[
                {
                    "id": new_id(),
                    "order_id": order_id,
                    "kind": "column_notified",
                    "from_status": None,
                    "to_status": None,
                    "actor_id": None,
                    "source": "outbox",
                    "data": {"purpose": purposes[order_id]},
                    "created_at": now,
                }
                for order_id in told
            ],
        )
    return told


# -- refunds ------------------------------------------------------------------------------------


async def request_refund(
    session: AsyncSession,
    *,
    order_id: str,
    amount_fen: int,
    out_refund_no: str,
    reason: str | None,
    source: str,
    actor_id: str | None,
) -> tuple[PaymentRefund, bool]:
    """Record a refund and queue its submission. Idempotent by ``out_refund_no``: (refund, created)."""
    existing = (
        await session.exec(select(PaymentRefund).where(PaymentRefund.out_refund_no == out_refund_no))
    ).first()
    if existing is not None:
        if existing.order_id != order_id or existing.amount_fen != amount_fen:
            raise RefundNumberConflict(out_refund_no=out_refund_no)
        return existing, False
    order = await _locked_order(session, order_id=order_id)
    if order is None:
        raise OrderNotFound(order_id=order_id)
    if OrderStatus(order.status) not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        raise IllegalTransition("只有已支付的订单可以退款", status=order.status)
    outstanding = await session.exec(
        select(sa.func.coalesce(sa.func.sum(PaymentRefund.amount_fen), 0)).where(
            PaymentRefund.order_id == order.id, PaymentRefund.status != RefundStatus.FAILED.value
        )
    )
    committed = int(outstanding.one())
    if amount_fen <= 0 or committed + amount_fen > order.amount_fen:
        raise RefundExceedsPaid(refundable_fen=order.amount_fen - committed)
    refund = PaymentRefund(
        order_id=order.id,
        out_refund_no=out_refund_no,
        amount_fen=amount_fen,
        reason=reason,
        requested_by=actor_id,
        source=source,
    )
    session.add(refund)
    await session.flush()
    await _event_for(
        session,
        order.id,
        kind="refund_requested",
        source=source,
        actor_id=actor_id,
        data={"out_refund_no": out_refund_no, "amount_fen": amount_fen, "reason": reason},
    )
    await audit.record(
        session,
        action="payments.refund_requested",
        actor_id=actor_id,
        subject_type="payments_order",
        subject_id=order.id,
        data={"out_refund_no": out_refund_no, "amount_fen": amount_fen, "source": source},
    )
    await outbox.enqueue(session, "payments.submit_refund", refund_id=refund.id)
    return refund, True


async def _locked_refund(session: AsyncSession, **where: str) -> PaymentRefund | None:
    stmt = select(PaymentRefund).with_for_update().execution_options(populate_existing=True)
    for key, value in where.items():
        stmt = stmt.where(getattr(PaymentRefund, key) == value)
    return (await session.exec(stmt)).first()


async def refund_succeeded(
    session: AsyncSession, refund: PaymentRefund, *, source: str, provider_refund_id: str | None
) -> bool:
    """Apply a succeeded refund to its order exactly once (``refund`` locked). True if applied now."""
    if refund.status == RefundStatus.SUCCEEDED:
        return False
    order = await _locked_order(session, order_id=refund.order_id)
    assert order is not None
    refund.status = RefundStatus.SUCCEEDED.value
    refund.succeeded_at = utcnow()
    refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
    session.add(refund)
    order.refunded_fen += refund.amount_fen
    target = (
        OrderStatus.REFUNDED if order.refunded_fen >= order.amount_fen else OrderStatus.PARTIALLY_REFUNDED
    )
    await transition(
        session,
        order,
        target,
        source=source,
        data={
            "out_refund_no": refund.out_refund_no,
            "amount_fen": refund.amount_fen,
            "refunded_fen": order.refunded_fen,
        },
    )
    return True


async def submit_refund(session: AsyncSession, *, refund_id: str) -> str:
    """Send a recorded refund to the provider (outbox job). Safe to repeat: same refund number."""
    from payments.registry import get_provider, notify_url

    refund = await _locked_refund(session, id=refund_id)
    if refund is None or refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return "done"
    order = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == refund.order_id))).one()
    provider = get_provider(order.provider)
    try:
        result = await provider.refund(
            RefundRequest(
                out_trade_no=order.out_trade_no,
                out_refund_no=refund.out_refund_no,
                total_fen=order.amount_fen,
                refund_fen=refund.amount_fen,
                reason=refund.reason,
                notify_url=notify_url(order.provider),
                transaction_id=order.provider_txn_id,
            )
        )
    except ProviderError as exc:
        if exc.retryable:
            raise
        refund.status = RefundStatus.FAILED.value
        refund.last_error = str(exc)[:300]
        session.add(refund)
        await _event_for(
            session,
            order.id,
            kind="refund_failed",
            source="provider",
            data={"out_refund_no": refund.out_refund_no, "error": str(exc)[:200]},
        )
        await audit.record(
            session,
            action="payments.refund_failed",
            subject_type="payments_order",
            subject_id=order.id,
            data={"out_refund_no": refund.out_refund_no, "code": exc.code},
        )
        return "failed"
    refund.provider_refund_id = result.refund_id
    if result.state is RefundState.SUCCEEDED:
        await refund_succeeded(
            session, refund, source=f"refund:{order.provider}", provider_refund_id=result.refund_id
        )
        return "succeeded"
    refund.status = RefundStatus.PROCESSING.value
    session.add(refund)
    return "processing"


async def _apply_refund_notification(session: AsyncSession, order: PaymentOrder, note: Notification) -> str:
    source = f"notification:{note.provider.value}"
    refund = await _locked_refund(session, out_refund_no=note.out_refund_no or "")
    if refund is None or refund.order_id != order.id:
        return await _flag(
            session,
            order,
            "unknown_refund",
            source,
            {"out_refund_no": note.out_refund_no, "refund_fen": note.refund_fen},
        )
    if note.refund_fen is not None and note.refund_fen != refund.amount_fen:
        return await _flag(
            session,
            order,
            "refund_amount",
            source,
            {
                "out_refund_no": refund.out_refund_no,
                "expected_fen": refund.amount_fen,
                "notified_fen": note.refund_fen,
            },
        )
    if note.refund_state is RefundState.SUCCEEDED:
        applied = await refund_succeeded(session, refund, source=source, provider_refund_id=note.refund_id)
        return "applied" if applied else "duplicate"
    if (
        note.refund_state in (RefundState.FAILED, RefundState.CLOSED)
        and refund.status != RefundStatus.SUCCEEDED
    ):
        refund.status = RefundStatus.FAILED.value
        refund.last_error = f"provider reported {note.refund_state}"
        session.add(refund)
        await _event_for(
            session,
            order.id,
            kind="refund_failed",
            source=source,
            data={"out_refund_no": refund.out_refund_no},
        )
        return "refund_failed"
    return "ignored"


# -- sweeps -------------------------------------------------------------------------------------


async def sweep_order(session: AsyncSession, *, order_id: str) -> str:
    """Ask the provider about one pending order; credit it, or close it if it expired unpaid."""
    from payments.registry import get_provider

    order = await _locked_order(session, order_id=order_id)
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    provider = get_provider(order.provider)
    status = await provider.query(order.out_trade_no)
    if status.state in (TradeState.PAID, TradeState.REFUNDED):
        return await _apply_payment(
            session,
            order,
            source="sweep",
            provider=order.provider,
            txn_id=status.transaction_id,
            amount_fen=status.amount_fen,
            state=TradeState.PAID,
            paid_at=status.paid_at,
        )
    if order.expires_at > utcnow():
        return "waiting"
    if status.state in (TradeState.NOT_PAID, TradeState.PAYING):
        try:
            await provider.close(order.out_trade_no)
        except ProviderError as exc:
            if exc.code == "ORDERPAID":
                again = await provider.query(order.out_trade_no)
                return await _apply_payment(
                    session,
                    order,
                    source="sweep",
                    provider=order.provider,
                    txn_id=again.transaction_id,
                    amount_fen=again.amount_fen,
                    state=again.state,
                    paid_at=again.paid_at,
                )
            raise
    order.closed_at = utcnow()
    await transition(
        session, order, OrderStatus.CLOSED, source="sweep", data={"provider_state": status.state.value}
    )
    return "closed"


async def pending_order_ids(session: AsyncSession, *, older_than: dt.datetime, limit: int = 500) -> list[str]:
    rows = await session.exec(
        select(PaymentOrder.id)
        .where(col(PaymentOrder.status).in_([s.value for s in PENDING]), PaymentOrder.created_at < older_than)
        .order_by(col(PaymentOrder.created_at))
        .limit(limit)
    )
    return list(rows.all())


async def close_order(
    session: AsyncSession, *, order_id: str, source: str, actor_id: str | None
) -> PaymentOrder:
    """Close an unpaid order here and at its provider (a resident abandoning it, or finance)."""
    from payments.registry import get_provider

    order = await _locked_order(session, order_id=order_id)
    if order is None:
        raise OrderNotFound(order_id=order_id)
    if OrderStatus(order.status) not in PENDING:
        raise IllegalTransition("只有待支付的订单可以关闭", status=order.status)
    try:
        await get_provider(order.provider).close(order.out_trade_no)
    except ProviderError as exc:
        if exc.code == "ORDERPAID":
            raise IllegalTransition("该订单已在支付渠道付款，稍后将自动入账", status=order.status) from exc
        raise ProviderUnavailable(provider=order.provider) from exc
    order.closed_at = utcnow()
    await transition(session, order, OrderStatus.CLOSED, source=source, actor_id=actor_id)
    return order
