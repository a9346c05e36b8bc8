"""The Alipay sandbox's records (apps, trades), its RSA2 signing, and the bill rows its trades make."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256

from app_api.core.clock import china_now
from payments.sandbox.common import BillRow, fee_for, pem_pkcs1_private


def sign_content(params: dict[str, str]) -> str:
    # Same canonical form as the SDK's get_sign_content (sorted k=v joined by &), written out here so
    # the sandbox does not need the 439 MB SDK to check the SDK.
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


def rsa2(key: rsa.RSAPrivateKey, text: str, charset: str) -> str:
    return base64.b64encode(key.sign(text.encode(charset), PKCS1v15(), SHA256())).decode()


@dataclass
class AlipayApp:
    app_id: str
    pid: str
    key: rsa.RSAPrivateKey

    @property
    def private_key_pkcs1(self) -> str:
        return pem_pkcs1_private(self.key)


@dataclass
class AlipayTrade:
    app: AlipayApp
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    notify_url: str | None
    product_code: str
    charset: str = "utf-8"
    buyer_id: str | None = None
    status: str = "WAIT_BUYER_PAY"
    gmt_create: dt.datetime = field(default_factory=china_now)
    gmt_payment: dt.datetime | None = None
    time_expire: dt.datetime | None = None
    refunds: dict[str, tuple[int, dt.datetime]] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        return sum(fen for fen, _ in self.refunds.values())


def bill_rows(
    trades: Iterable[AlipayTrade], app: AlipayApp, bill_date: dt.date, extra: Iterable[BillRow] = ()
) -> list[BillRow]:
    """The day's rows of one account (``pid``): payments and refunds, plus ``extra`` rows (tests)."""
    rows: list[BillRow] = []
    for trade in trades:
        if trade.app.pid != app.pid or trade.gmt_payment is None:
            continue
        base: dict[str, Any] = dict(
            app_id=trade.app.app_id,
            mch_id=app.pid,
            transaction_id=trade.trade_no,
            out_trade_no=trade.out_trade_no,
            payer=trade.buyer_id or "159****0000",
            trade_type=trade.product_code,
            amount_fen=trade.total_fen,
            body=trade.subject,
        )
        if trade.gmt_payment.date() == bill_date:
            rows.append(
                BillRow(
                    traded_at=trade.gmt_payment,
                    status="SUCCESS",
                    fee_fen=fee_for(trade.total_fen),
                    **base,
                )
            )
        for request_no, (fen, at) in trade.refunds.items():
            if at.date() == bill_date:
                rows.append(
                    BillRow(
                        traded_at=at,
                        status="REFUND",
                        fee_fen=-fee_for(fen),
                        out_refund_no=request_no,
                        refund_fen=fen,
                        refund_status="SUCCESS",
                        **base,
                    )
                )
    rows.extend(extra)
    rows.sort(key=lambda r: r.traded_at)
    return rows
