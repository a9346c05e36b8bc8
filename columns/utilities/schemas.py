from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

HolderName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
AccountNo = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class BillerPublic(BaseModel):
    code: str
    kind: str
    kind_name: str
    name: str


class BindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    biller_code: str = Field(max_length=32)
    account_no: AccountNo
    holder_name: HolderName
    label: str = Field(default="", max_length=20)


class BindingPublic(BaseModel):
    id: str
    biller_code: str
    biller_name: str
    kind: str
    kind_name: str
    account_no: str
    holder_masked: str
    address_masked: str
    label: str
    created_at: dt.datetime


class BillPublic(BaseModel):
    id: str
    bill_no: str
    period: str
    amount_fen: int
    amount_yuan: str
    due_date: dt.date
    usage: str
    overdue: bool


class AccountBills(BaseModel):
    binding: BindingPublic
    bills: list[BillPublic]
    total_fen: int
    # Set when the biller could not be asked just now: the bills shown are those seen last.
    unavailable: str | None = None


class OutstandingPublic(BaseModel):
    accounts: list[AccountBills]
    total_fen: int


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bill_ids: list[str] = Field(min_length=1, max_length=20)
    provider: Literal["wechat_v2", "wechat_v3", "alipay"]
    channel: Literal["miniprogram", "app"] = "app"
    payer_id: str | None = Field(default=None, max_length=128)  # WeChat openid for mini-program payments


class PayStarted(BaseModel):
    payment_id: str
    out_trade_no: str
    amount_fen: int
    client_params: dict[str, str]


class ReceiptLinePublic(BaseModel):
    bill_no: str
    biller_name: str
    kind_name: str
    account_no: str
    period: str
    amount_fen: int
    outcome: str  # pending | applied | refunded
    # "待销账" until the biller confirmed; then its receipt number.
    biller_status: Literal["waiting", "confirmed", "refunded", "delayed"]
    receipt_no: str | None


class PaymentPublic(BaseModel):
    id: str
    out_trade_no: str | None
    provider: str
    amount_fen: int
    amount_yuan: str
    status: str
    created_at: dt.datetime
    paid_at: dt.datetime | None
    lines: list[ReceiptLinePublic]


class PaymentPage(BaseModel):
    items: list[PaymentPublic]
    total: int
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class NoticePublic(BaseModel):
    id: str
    biller_code: str
    account_no: str
    bill_no: str
    amount_fen: int
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None
    receipt_no: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    dead_at: dt.datetime | None


class NoticePage(BaseModel):
    items: list[NoticePublic]
    total: int
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
