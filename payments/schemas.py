from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from payments.providers.base import ProviderName


class OrderPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    out_trade_no: str
    purpose: str
    description: str
    amount_fen: int
    refunded_fen: int
    provider: str
    channel: str
    status: str
    paid_at: dt.datetime | None
    expires_at: dt.datetime
    created_at: dt.datetime


class OrderFinance(OrderPublic):
    account_id: str
    purpose_ref: str
    provider_txn_id: str | None
    column_notified_at: dt.datetime | None


class OrderPage(BaseModel):
    items: list[OrderPublic]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class OrderFinancePage(BaseModel):
    items: list[OrderFinance]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class PayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payer_id: str | None = Field(
        default=None, max_length=64, description="小程序支付时的 openid / 支付宝用户 ID"
    )


class PayResponse(BaseModel):
    order: OrderPublic
    client_params: dict[str, str]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_fen: int = Field(gt=0, le=10**12)
    out_refund_no: str = Field(min_length=6, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")
    reason: str | None = Field(default=None, max_length=200)


class RefundPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    order_id: str
    out_refund_no: str
    amount_fen: int
    status: str
    reason: str | None
    source: str
    # The provider's last refusal or failure while submitting or querying it (retried by the sweep).
    last_error: str | None = None
    created_at: dt.datetime
    succeeded_at: dt.datetime | None


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    from_status: str | None
    to_status: str | None
    source: str
    data: dict[str, Any]
    created_at: dt.datetime


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: ProviderName
    bill_date: dt.date


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    provider: str
    bill_date: dt.date
    status: str
    stage: str
    progress_rows: int
    total_rows: int
    totals: dict[str, Any]
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    run_id: str
    category: str
    out_trade_no: str | None
    provider_txn_id: str | None
    out_refund_no: str | None
    order_id: str | None
    ledger_fen: int | None
    provider_fen: int | None
    detail: str
    resolved_at: dt.datetime | None
    resolved_by: str | None
    resolution_note: str | None


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=2, max_length=500)
