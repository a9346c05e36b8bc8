"""The WeChat Pay v2 sandbox's records (merchants, orders, refunds), its XML and signatures (made with
wechatpy's own helpers), and the bill rows its orders make."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from payments.sandbox.common import BillRow, order_bill_rows


def sign(params: dict[str, Any], key: str, sign_type: str) -> str:
    # The sandbox signs with wechatpy's own helpers: it is the reference our verifier is checked against.
    from wechatpy.pay.utils import calculate_signature, calculate_signature_hmac

    clean = {k: v for k, v in params.items() if k != "sign" and v not in (None, "")}
    if sign_type == "HMAC-SHA256":
        return str(calculate_signature_hmac(clean, key))
    return str(calculate_signature(clean, key))


def to_xml(data: dict[str, Any]) -> str:
    from wechatpy.pay.utils import dict_to_xml

    body = {k: v for k, v in data.items() if k != "sign" and v not in (None, "")}
    return str(dict_to_xml(body, data.get("sign")))


@dataclass
class V2Merchant:
    appid: str
    mch_id: str
    api_key: str


@dataclass
class V2Refund:
    out_refund_no: str
    refund_id: str
    refund_fee: int
    status: str = "PROCESSING"
    notify_url: str | None = None
    success_time: dt.datetime | None = None
    scheduled: bool = False


@dataclass
class V2Order:
    merchant: V2Merchant
    out_trade_no: str
    prepay_id: str
    trade_type: str
    total_fee: int
    body: str
    notify_url: str
    sign_type: str
    openid: str | None = None
    attach: str | None = None
    time_expire: dt.datetime | None = None
    state: str = "NOTPAY"
    transaction_id: str | None = None
    time_end: dt.datetime | None = None
    refunds: dict[str, V2Refund] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        return sum(r.refund_fee for r in self.refunds.values() if r.status != "REFUNDCLOSE")


def bill_rows(
    orders: Iterable[V2Order], merchant: V2Merchant, bill_date: dt.date, extra: Iterable[BillRow] = ()
) -> list[BillRow]:
    """The day's rows of one merchant: payments and refunds, plus ``extra`` rows (tests)."""
    rows: list[BillRow] = []
    for order in orders:
        if order.merchant is not merchant or order.time_end is None or order.transaction_id is None:
            continue
        base: dict[str, Any] = dict(
            app_id=merchant.appid,
            mch_id=merchant.mch_id,
            transaction_id=order.transaction_id,
            out_trade_no=order.out_trade_no,
            payer=order.openid or "",
            trade_type=order.trade_type,
            amount_fen=order.total_fee,
            body=order.body,
            attach=order.attach or "",
        )
        rows += order_bill_rows(
            base,
            paid_at=order.time_end,
            amount_fen=order.total_fee,
            refunds=[
                (r.success_time, r.refund_id, r.out_refund_no, r.refund_fee) for r in order.refunds.values()
            ],
            bill_date=bill_date,
        )
    rows.extend(extra)
    rows.sort(key=lambda r: r.traded_at)
    return rows
