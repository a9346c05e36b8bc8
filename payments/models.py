"""The payment ledger: orders with a state machine and an append-only event log, raw notifications
stored once per provider transaction, refunds, and reconciliation runs with their discrepancies."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id


class OrderStatus(enum.StrEnum):
    CREATED = "created"
    PAYING = "paying"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CLOSED = "closed"
    FAILED = "failed"


# The only legal transitions. closed/failed -> paid exists because the provider's word on money
# received wins: a payment completed just before we closed the order is still money in the account
# (the event records it as a late payment and reconciliation shows it).
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CREATED: frozenset(
        {OrderStatus.PAYING, OrderStatus.PAID, OrderStatus.CLOSED, OrderStatus.FAILED}
    ),
    OrderStatus.PAYING: frozenset({OrderStatus.PAID, OrderStatus.CLOSED, OrderStatus.FAILED}),
    OrderStatus.PAID: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.PARTIALLY_REFUNDED: frozenset({OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED}),
    OrderStatus.REFUNDED: frozenset(),
    OrderStatus.CLOSED: frozenset({OrderStatus.PAID}),
    OrderStatus.FAILED: frozenset({OrderStatus.PAID, OrderStatus.CLOSED}),
}
PENDING = (OrderStatus.CREATED, OrderStatus.PAYING)
PAID_LIKE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED)


class PaymentOrder(SQLModel, table=True):
    __tablename__ = "payments_order"
    __table_args__ = (
        sa.UniqueConstraint("provider", "provider_txn_id", name="uq_payments_order_provider_txn"),
        sa.Index("ix_payments_order_status_created", "status", "created_at"),
        sa.Index("ix_payments_order_paid_at", "paid_at"),
        # Paid orders whose column was never told (the hand-off sweep's every-minute query): a
        # handful of rows however long the ledger grows.
        sa.Index(
            "ix_payments_order_unnotified",
            "paid_at",
            postgresql_where=sa.text("column_notified_at IS NULL AND paid_at IS NOT NULL"),
            sqlite_where=sa.text("column_notified_at IS NULL AND paid_at IS NOT NULL"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    out_trade_no: str = Field(max_length=32, unique=True)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    purpose: str = Field(max_length=80)  # "<column>.<kind>", e.g. "utilities.bill"
    purpose_ref: str = Field(max_length=200)  # the column's own reference (bill ids, ...)
    purpose_key: str = Field(max_length=64, index=True)  # hash of purpose + ref: one purpose, one payment
    description: str = Field(max_length=128)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    provider: str = Field(max_length=20)
    # The merchant (WeChat mch_id / Alipay seller id) the order was opened under: a day's bill is
    # per merchant, so reconciliation matches it with that merchant's orders only.
    merchant_id: str = Field(default="", max_length=64)
    channel: str = Field(max_length=20)
    status: str = Field(default=OrderStatus.CREATED.value, max_length=24)
    provider_txn_id: str | None = Field(default=None, max_length=64)
    refunded_fen: int = Field(default=0, sa_type=sa.BigInteger)
    # Set when this order was paid although another order had already paid its purpose (both are
    # real money; finance refunds one). Decided by ``PurposePaid``'s primary key, so it is race-free.
    duplicate_of: str | None = Field(default=None, max_length=32)
    paid_at: dt.datetime | None = datetime_field()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    closed_at: dt.datetime | None = datetime_field()
    column_notified_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()
    updated_at: dt.datetime = created_at_field()


class PurposePaid(SQLModel, table=True):
    """The first order that paid each purpose. Its primary key makes "paid twice" a fact decided by
    the database: of two transactions paying one purpose at once, the second waits and then finds
    the first's row. Reconciliation reads the result from ``PaymentOrder.duplicate_of``."""

    __tablename__ = "payments_purpose_paid"

    purpose_key: str = Field(primary_key=True, max_length=64)
    order_id: str = Field(max_length=32)
    created_at: dt.datetime = created_at_field()


class PaymentEvent(SQLModel, table=True):
    """Append-only: every transition of an order (and every refused attempt to change it)."""

    __tablename__ = "payments_event"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    order_id: str = Field(foreign_key="payments_order.id", index=True, max_length=32)
    kind: str = Field(max_length=40)  # transition | flagged | refund_requested | ...
    from_status: str | None = Field(default=None, max_length=24)
    to_status: str | None = Field(default=None, max_length=24)
    actor_id: str | None = Field(default=None, max_length=32)
    source: str = Field(max_length=40)  # notification:wechat_v2, sweep, finance, column, ...
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()


class PaymentNotification(SQLModel, table=True):
    """A verified notification, stored once per provider transaction (or refund)."""

    __tablename__ = "payments_notification"
    __table_args__ = (sa.UniqueConstraint("provider", "dedupe_key", name="uq_payments_notification_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    provider: str = Field(max_length=20)
    dedupe_key: str = Field(max_length=120)
    kind: str = Field(max_length=20)
    out_trade_no: str = Field(max_length=64, index=True)
    order_id: str | None = Field(default=None, max_length=32, index=True)
    outcome: str = Field(max_length=40)  # applied | flagged_amount | unknown_order | ...
    body: str = Field(sa_type=sa.Text)  # the raw body as received (decoded losslessly)
    headers: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    times_received: int = 1
    received_at: dt.datetime = created_at_field()
    last_received_at: dt.datetime = created_at_field()


class RefundStatus(enum.StrEnum):
    REQUESTED = "requested"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the money stayed with the merchant: its amount is refundable again
    # Stuck between the merchant and the payer (see RefundState.ABNORMAL): its amount stays set
    # aside, finance is told (a ``refund_abnormal`` flag) and settles it at the provider.
    ABNORMAL = "abnormal"


class PaymentRefund(SQLModel, table=True):
    __tablename__ = "payments_refund"
    __table_args__ = (
        # Refunds not settled yet (the refund sweep's every-minute query).
        sa.Index(
            "ix_payments_refund_open",
            "created_at",
            postgresql_where=sa.text("status IN ('requested', 'processing')"),
            sqlite_where=sa.text("status IN ('requested', 'processing')"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    order_id: str = Field(foreign_key="payments_order.id", index=True, max_length=32)
    out_refund_no: str = Field(max_length=64, unique=True)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    status: str = Field(default=RefundStatus.REQUESTED.value, max_length=20)
    reason: str | None = Field(default=None, max_length=200)
    provider_refund_id: str | None = Field(default=None, max_length=64)
    requested_by: str | None = Field(default=None, max_length=32)
    source: str = Field(max_length=40)  # finance | column:<slug>
    last_error: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = created_at_field()
    succeeded_at: dt.datetime | None = datetime_field(index=True)


class ReconciliationRun(SQLModel, table=True):
    __tablename__ = "payments_recon_run"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    provider: str = Field(max_length=20)
    bill_date: dt.date = Field(sa_type=sa.Date, index=True)
    status: str = Field(default="running", max_length=20)  # running | done | failed
    stage: str = Field(default="queued", max_length=40)  # downloading | parsing | matching | saving | done
    progress_rows: int = Field(default=0, sa_type=sa.BigInteger)
    total_rows: int = Field(default=0, sa_type=sa.BigInteger)
    totals: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    error: str | None = Field(default=None, max_length=500)
    triggered_by: str | None = Field(default=None, max_length=32)
    started_at: dt.datetime = created_at_field()
    finished_at: dt.datetime | None = datetime_field()


class Discrepancy(enum.StrEnum):
    MISSING_IN_LEDGER = "missing_in_ledger"  # paid at the provider, not in the ledger
    MISSING_AT_PROVIDER = "missing_at_provider"  # paid in the ledger, absent from the bill
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"  # provider paid, ledger order exists but is not paid
    DUPLICATE_PURPOSE = "duplicate_purpose"  # two payments for one purpose
    REFUND_MISMATCH = "refund_mismatch"
    FOREIGN_ROW = "foreign_row"  # a row for another app id or merchant id


DISCREPANCY_NAMES = {
    Discrepancy.MISSING_IN_LEDGER: "渠道有、账本无",
    Discrepancy.MISSING_AT_PROVIDER: "账本有、渠道无",
    Discrepancy.AMOUNT_MISMATCH: "金额不符",
    Discrepancy.STATUS_MISMATCH: "状态不符",
    Discrepancy.DUPLICATE_PURPOSE: "同一事项重复支付",
    Discrepancy.REFUND_MISMATCH: "退款不符",
    Discrepancy.FOREIGN_ROW: "其他应用或商户的记录",
}


class ReconciliationItem(SQLModel, table=True):
    __tablename__ = "payments_recon_item"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    run_id: str = Field(foreign_key="payments_recon_run.id", index=True, max_length=32)
    category: str = Field(max_length=40)
    out_trade_no: str | None = Field(default=None, max_length=64)
    provider_txn_id: str | None = Field(default=None, max_length=64)
    out_refund_no: str | None = Field(default=None, max_length=64)
    order_id: str | None = Field(default=None, max_length=32)
    ledger_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    provider_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    detail: str = Field(default="", max_length=300)
    resolved_at: dt.datetime | None = datetime_field()
    resolved_by: str | None = Field(default=None, max_length=32)
    resolution_note: str | None = Field(default=None, max_length=500)


# The tables, for core statements where the ORM's unit of work costs too much (SQLModel does not
# declare ``__table__`` to type checkers).
ORDERS: sa.Table = SQLModel.metadata.tables["payments_order"]
PURPOSES_PAID: sa.Table = SQLModel.metadata.tables["payments_purpose_paid"]
EVENTS: sa.Table = SQLModel.metadata.tables["payments_event"]
NOTIFICATIONS: sa.Table = SQLModel.metadata.tables["payments_notification"]
RECON_ITEMS: sa.Table = SQLModel.metadata.tables["payments_recon_item"]
