"""Request and answer bodies of the cashier for external columns."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_KEY = r"^[A-Za-z0-9_-]{6,64}$"


class CashierRegister(BaseModel):
    notify_url: str = Field(max_length=500, title="支付结果通知地址")
    sub_accounts: list[str] = Field(min_length=1, max_length=20, title="收款子账户")
    rotate_secret: bool = Field(default=False, title="重新生成签名密钥")


class CashierRegistered(BaseModel):
    column_id: str
    notify_url: str
    sub_accounts: list[str]
    # Only when it was made by this call: it is never shown again.
    cashier_secret: str | None = None


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_order_no: str = Field(pattern=_KEY, title="栏目订单号")
    sub: str = Field(min_length=1, max_length=64, title="居民标识")
    amount_fen: int = Field(gt=0, le=100_000_000, title="金额（分）")
    description: str = Field(min_length=1, max_length=60, title="商品描述")
    sub_account: str = Field(min_length=1, max_length=64, title="收款子账户")


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out_refund_no: str = Field(pattern=_KEY, title="栏目退款单号")
    amount_fen: int = Field(gt=0, le=100_000_000, title="退款金额（分）")
    reason: str | None = Field(default=None, max_length=80, title="退款原因")


class RefundOut(BaseModel):
    id: str
    out_refund_no: str
    amount_fen: int
    reason: str | None
    status: str  # requested | processing | succeeded | failed | abnormal (the ledger's refund)
    created_at: dt.datetime


class OrderOut(BaseModel):
    id: str
    out_order_no: str
    status: Literal["created", "paid", "refunded", "closed"]
    amount_fen: int
    refunded_fen: int
    description: str
    sub_account: str
    provider: str | None
    out_trade_no: str | None
    paid_at: dt.datetime | None
    created_at: dt.datetime
    # Unpaid by then, the order is closed and the column told (``order.closed``).
    expires_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    pay_path: str
    refunds: list[RefundOut] = []


class ResidentOrderOut(BaseModel):
    id: str
    column_name: str
    description: str
    amount_fen: int
    status: str
    paid_at: dt.datetime | None
    expires_at: dt.datetime | None = None


class PayIn(BaseModel):
    provider: Literal["wechat_v2", "wechat_v3", "alipay"]
    channel: Literal["app", "miniprogram"] = "app"
    payer_id: str | None = Field(default=None, max_length=128)


class PayOut(BaseModel):
    order_id: str
    payment_order_id: str
    out_trade_no: str
    client_params: dict[str, str]


class NoticeOut(BaseModel):
    id: str
    order_id: str
    event: str
    status: str
    attempts: int
    last_error: str | None
    last_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    created_at: dt.datetime


class NoticeList(BaseModel):
    notices: list[NoticeOut]


class FinanceOrder(BaseModel):
    order_id: str
    out_order_no: str
    out_trade_no: str | None
    provider: str | None
    sub_account: str
    amount_fen: int
    refunded_fen: int
    paid_at: dt.datetime | None
    # The day's latest finished reconciliation of its provider: matched, a discrepancy, or not_run.
    reconciliation: str


class FinanceColumn(BaseModel):
    column_id: str
    column_name: str
    client_id: str
    paid_count: int
    paid_fen: int
    refunded_fen: int
    unmatched_count: int  # payments the day's reconciliation flagged
    orders: list[FinanceOrder]


class FinanceDay(BaseModel):
    day: dt.date
    columns: list[FinanceColumn]
