"""The WeChat Pay v3 sandbox's records (merchants, orders, refunds), its RSA-SHA256 signing, and the
bill rows its orders make."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from payments.sandbox.common import BillRow, order_bill_rows, pem_pkcs8_private


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), PKCS1v15(), SHA256())).decode()


@dataclass
class V3Merchant:
    appid: str
    mchid: str
    apiv3_key: str
    cert_serial_no: str
    private_key: rsa.RSAPrivateKey

    @property
    def private_key_pem(self) -> str:
        return pem_pkcs8_private(self.private_key)


@dataclass
class V3Refund:
    out_refund_no: str
    refund_id: str
    refund: int
    status: str = "PROCESSING"
    notify_url: str | None = None
    success_time: dt.datetime | None = None
    scheduled: bool = False


@dataclass
class V3Order:
    merchant: V3Merchant
    out_trade_no: str
    prepay_id: str
    trade_type: str
    total: int
    description: str
    notify_url: str
    openid: str | None = None
    attach: str | None = None
    time_expire: dt.datetime | None = None
    state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: dt.datetime | None = None
    refunds: dict[str, V3Refund] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        return sum(r.refund for r in self.refunds.values() if r.status != "CLOSED")


def bill_rows(
    orders: Iterable[V3Order], merchant: V3Merchant, bill_date: dt.date, extra: Iterable[BillRow] = ()
) -> list[BillRow]:
    """The day's rows of one merchant: payments and refunds, plus ``extra`` rows (tests)."""
    rows: list[BillRow] = []
    for order in orders:
        if order.merchant is not merchant or order.success_time is None or order.transaction_id is None:
            continue
        base: dict[str, Any] = dict(
            app_id=merchant.appid,
            mch_id=merchant.mchid,
            transaction_id=order.transaction_id,
            out_trade_no=order.out_trade_no,
            payer=order.openid or "",
            trade_type=order.trade_type,
            amount_fen=order.total,
            body=order.description,
            attach=order.attach or "",
        )
        rows += order_bill_rows(
            base,
            paid_at=order.success_time,
            amount_fen=order.total,
            refunds=[
                (r.success_time, r.refund_id, r.out_refund_no, r.refund) for r in order.refunds.values()
            ],
            bill_date=bill_date,
        )
    rows.extend(extra)
    rows.sort(key=lambda r: r.traded_at)
    return rows
