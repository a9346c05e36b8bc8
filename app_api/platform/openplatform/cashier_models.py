"""The cashier for external columns (issue 20, item 3): a column's cashier registration, its orders
and refunds, the nonces of its signed requests and the notifications its server is owed.

Money is integer fen. The payment itself is a ``payments`` order (purpose ``openplatform.cashier``,
purpose reference = the cashier order's id); these tables hold what the column asked for and what
it has been told, so a column sees only its own rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id
from app_api.platform.accounts.closure import POLICY, Retain


class CashierAccount(SQLModel, table=True):
    """A column's cashier registration: where it is told of payments, the merchant sub-accounts it
    may name, and the key its server signs with (encrypted at rest; shown once to the admin)."""

    __tablename__ = "app_cashier_account"

    column_id: str = Field(foreign_key="app_external_column.id", primary_key=True, max_length=32)
    notify_url: str = Field(max_length=500)
    sub_accounts: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    secret_enc: bytes = Field(
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column(
            "openplatform.cashier:{column_id}", not_exported="第三方栏目的签名密钥，不含您的个人信息"
        ),
    )
    created_by: str = Field(max_length=32)
    created_at: dt.datetime = created_at_field()
    updated_at: dt.datetime = created_at_field()


class CashierNonce(SQLModel, table=True):
    """A nonce a column's server has used: its primary key refuses a replay in any process, after a
    Redis wipe too. Kept a day (a request is refused anyway once its timestamp is past the skew)."""

    __tablename__ = "app_cashier_nonce"

    column_id: str = Field(primary_key=True, max_length=32)
    nonce: str = Field(primary_key=True, max_length=64)
    seen_at: dt.datetime = created_at_field()


class CashierOrder(SQLModel, table=True):
    """An order a column opened for a resident; ``status`` is ``created``, ``paid``, ``refunded`` or
    ``closed`` (unpaid at ``expires_at``: the column is told, a late payment is refunded)."""

    __tablename__ = "app_cashier_order"
    __table_args__ = (
        sa.UniqueConstraint("column_id", "out_order_no"),
        sa.Index("ix_app_cashier_order_paid", "paid_at"),
        # The expiry sweep's query: unpaid orders by their deadline.
        sa.Index("ix_app_cashier_order_open", "status", "expires_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", index=True, max_length=32)
    # The column's own order number: its idempotency key.
    out_order_no: str = Field(max_length=64)
    request_hash: str = Field(max_length=64)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    description: str = Field(max_length=128)
    sub_account: str = Field(max_length=64)
    status: str = Field(default="created", max_length=20)
    payment_order_id: str | None = Field(default=None, max_length=32, index=True)
    out_trade_no: str | None = Field(default=None, max_length=32)
    provider: str | None = Field(default=None, max_length=20)
    refunded_fen: int = Field(default=0, sa_type=sa.BigInteger)
    paid_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()
    # Orders from before expiry existed have none and never expire.
    expires_at: dt.datetime | None = datetime_field()
    closed_at: dt.datetime | None = datetime_field()


class CashierRefund(SQLModel, table=True):
    """A refund a column asked for, kept on its refund number (a resend gets the same refund)."""

    __tablename__ = "app_cashier_refund"
    __table_args__ = (sa.UniqueConstraint("column_id", "out_refund_no"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", max_length=32)
    order_id: str = Field(foreign_key="app_cashier_order.id", index=True, max_length=32)
    out_refund_no: str = Field(max_length=64)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    reason: str | None = Field(default=None, max_length=80)
    payment_refund_id: str = Field(max_length=32)
    created_at: dt.datetime = created_at_field()
    # The ledger's final answer (``succeeded`` / ``failed``), recorded once with the column's notice.
    settled_status: str | None = Field(default=None, max_length=20)
    settled_at: dt.datetime | None = datetime_field(index=True)


class CashierNotice(SQLModel, table=True):
    """A notification the column's server is owed: ``pending`` until it acknowledges
    (``delivered``), or ``given_up`` after the last attempt (shown to admins, who may retry it)."""

    __tablename__ = "app_cashier_notice"
    __table_args__ = (
        sa.UniqueConstraint("order_id", "event"),
        sa.Index("ix_app_cashier_notice_status", "column_id", "status"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", max_length=32)
    order_id: str = Field(foreign_key="app_cashier_order.id", max_length=32)
    event: str = Field(max_length=30)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    status: str = Field(default="pending", max_length=10)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=300)
    last_attempt_at: dt.datetime | None = datetime_field()
    delivered_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()


# What closing a resident's account does with these rows (app_api.platform.accounts.closure): money
# records are kept for the accounting law, as the ledger's own are.
_ACCOUNTING = "第三方栏目的收款订单、退款及支付结果通知依《会计档案管理办法》保存"
POLICY.setdefault("app_cashier_order", Retain(_ACCOUNTING))
POLICY.setdefault("app_cashier_refund", Retain(_ACCOUNTING))
POLICY.setdefault("app_cashier_notice", Retain(_ACCOUNTING))
POLICY.setdefault("app_cashier_account", Retain("由工作人员维护的第三方栏目收银设置，不含您的个人信息"))
