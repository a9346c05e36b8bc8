"""Bound household accounts, bills as last seen at the biller, payments of bills, and the
notifications that tell each biller of each paid bill (exactly once, with retries and a dead letter)."""

from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id


class Binding(SQLModel, table=True):
    """A household account a resident has bound after the biller confirmed the holder's name."""

    __tablename__ = "utilities_binding"
    __table_args__ = (
        sa.Index("ix_utilities_binding_owner", "account_id", "unbound_at"),
        # One live binding per resident and household account, also when two binds race.
        sa.Index(
            "uq_utilities_binding_live",
            "account_id",
            "biller_code",
            "account_no",
            unique=True,
            postgresql_where=sa.text("unbound_at IS NULL"),
            sqlite_where=sa.text("unbound_at IS NULL"),
        ),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", max_length=32)
    biller_code: str = Field(max_length=32)
    kind: str = Field(max_length=20)
    account_no: str = Field(max_length=32)
    holder_name_enc: bytes = Field(
        sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("utilities.holder")
    )
    holder_masked: str = Field(max_length=20)
    address_masked: str = Field(default="", max_length=60)
    label: str = Field(default="", max_length=20)  # "家里", "父母家"
    created_at: dt.datetime = created_at_field()
    unbound_at: dt.datetime | None = datetime_field()


class BillStatus(enum.StrEnum):
    OUTSTANDING = "outstanding"
    PAID = "paid"  # paid through us (credited payment)
    SETTLED_ELSEWHERE = "settled_elsewhere"  # gone from the biller's list without a payment of ours


class Bill(SQLModel, table=True):
    __tablename__ = "utilities_bill"
    __table_args__ = (
        sa.UniqueConstraint("biller_code", "bill_no", name="uq_utilities_bill_biller_no"),
        sa.Index("ix_utilities_bill_account", "biller_code", "account_no"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    biller_code: str = Field(max_length=32)
    account_no: str = Field(max_length=32)
    bill_no: str = Field(max_length=64)
    period: str = Field(max_length=20)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    due_date: dt.date
    usage: str = Field(default="", max_length=40)
    status: str = Field(default=BillStatus.OUTSTANDING.value, max_length=20)
    paid_payment_id: str | None = Field(default=None, max_length=32)
    paid_at: dt.datetime | None = datetime_field()
    reminded_at: dt.datetime | None = datetime_field()
    first_seen_at: dt.datetime = created_at_field()
    last_seen_at: dt.datetime = created_at_field()


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"
    PAID = "paid"


class Payment(SQLModel, table=True):
    """One payment order for one or several bills of one resident."""

    __tablename__ = "utilities_payment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    order_id: str | None = Field(default=None, max_length=32, index=True)  # payments_order.id
    out_trade_no: str | None = Field(default=None, max_length=32)
    provider: str = Field(max_length=20)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    status: str = Field(default=PaymentStatus.PENDING.value, max_length=20)
    created_at: dt.datetime = created_at_field()
    paid_at: dt.datetime | None = datetime_field()


class ItemOutcome(enum.StrEnum):
    PENDING = "pending"
    APPLIED = "applied"  # this payment settled the bill
    REFUNDED = "refunded"  # the bill had already been paid by another payment: money sent back


class PaymentItem(SQLModel, table=True):
    __tablename__ = "utilities_payment_item"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    payment_id: str = Field(foreign_key="utilities_payment.id", index=True, max_length=32)
    bill_id: str = Field(foreign_key="utilities_bill.id", index=True, max_length=32)
    binding_id: str = Field(foreign_key="utilities_binding.id", max_length=32)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    outcome: str = Field(default=ItemOutcome.PENDING.value, max_length=20)


class NoticeStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"  # retries exhausted or refused by the biller: an administrator must look


class BillerNotice(SQLModel, table=True):
    """'Bill X was paid': delivered to the biller once (its idempotency key is ``id``)."""

    __tablename__ = "utilities_biller_notice"
    __table_args__ = (sa.Index("ix_utilities_notice_due", "status", "next_attempt_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    item_id: str = Field(foreign_key="utilities_payment_item.id", unique=True, max_length=32)
    biller_code: str = Field(max_length=32)
    account_no: str = Field(max_length=32)
    bill_no: str = Field(max_length=64)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    paid_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    channel: str = Field(max_length=20)
    status: str = Field(default=NoticeStatus.PENDING.value, max_length=20)
    attempts: int = 0
    next_attempt_at: dt.datetime = created_at_field()
    lease_until: dt.datetime | None = datetime_field()
    last_error: str | None = Field(default=None, max_length=300)
    receipt_no: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = created_at_field()
    delivered_at: dt.datetime | None = datetime_field()
    dead_at: dt.datetime | None = datetime_field()
