"""Alipay through the official SDK (alipay.aop.api) against the Alipay sandbox."""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
import urllib.parse
import zipfile

import httpx
import pytest
from payments_helpers import control, order_no, wait_for

from app_api.core.clock import CHINA_TZ
from payments.providers.base import (
    BillIntegrityError,
    BillUnavailable,
    Channel,
    CreatePayment,
    NotificationKind,
    ProviderError,
    RefundRequest,
    RefundState,
    TradeState,
)


def make_provider(sandbox, server, app, **overrides):
    from payments.providers.alipay import AlipayConfig, AlipayProvider

    values = dict(
        app_id=app.app_id,
        app_private_key=app.private_key_pkcs1,
        alipay_public_key=sandbox.alipay_public_key_pem,
        seller_id=app.pid,
        server_url=f"{server.url}/gateway.do",
    )
    values.update(overrides)
    return AlipayProvider(AlipayConfig(**values))


@pytest.fixture
def ali(alipay_sandbox, receiver):
    sandbox, server = alipay_sandbox
    sandbox.bill_tamper = None
    sandbox.notify_charset = None
    provider = make_provider(sandbox, server, sandbox.add_app())
    receiver.providers["alipay"] = provider
    receiver.clear()
    return provider, sandbox, server


async def create(provider, receiver, amount=4321, channel=Channel.MINIPROGRAM, **kw):
    out = order_no()
    created = await provider.create(
        CreatePayment(
            out_trade_no=out,
            amount_fen=amount,
            description="电费 亳州供电",
            channel=channel,
            notify_url=receiver.notify_url("alipay"),
            payer_id="2088102177000001" if channel is Channel.MINIPROGRAM else None,
            **kw,
        )
    )
    return out, created


def test_sdk_not_imported_by_provider_module():
    """The 439 MB SDK stays out of the import path until an Alipay operation runs."""
    code = (
        "import sys, payments.providers.alipay, payments.sandbox.alipay; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alipay'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pkcs8_key_refused(alipay_sandbox):
    from payments.sandbox.common import pem_pkcs8_private

    sandbox, server = alipay_sandbox
    app = sandbox.add_app()
    with pytest.raises(ValueError, match="PKCS#1"):
        make_provider(sandbox, server, app, app_private_key=pem_pkcs8_private(app.key))


async def test_miniprogram_pay_notify_query_refund(ali, receiver):
    provider, _sandbox, server = ali
    out, created = await create(provider, receiver)
    assert created.client_params["tradeNO"] == created.prepay_id
    assert (await provider.query(out)).state is TradeState.NOT_PAID

    result = await control(server, "/_sandbox/pay", out_trade_no=out)
    assert result["deliveries"][0]["response"] == "success"
    [note] = receiver.accepted
    assert note.kind is NotificationKind.PAYMENT and note.trade_state is TradeState.PAID
    assert note.amount_fen == 4321 and note.transaction_id == created.prepay_id
    assert note.paid_at is not None

    status = await provider.query(out)
    assert status.state is TradeState.PAID and status.amount_fen == 4321

    refund = await provider.refund(
        RefundRequest(out_trade_no=out, out_refund_no="R1" + out, total_fen=4321, refund_fen=321)
    )
    assert refund.state is RefundState.SUCCEEDED
    await wait_for(lambda: len(receiver.accepted) == 2)
    refund_note = receiver.accepted[1]
    assert refund_note.kind is NotificationKind.REFUND and refund_note.out_refund_no == "R1" + out
    assert refund_note.raw["refunded_total_fen"] == 321
    # Same refund number: no second refund.
    await provider.refund(
        RefundRequest(out_trade_no=out, out_refund_no="R1" + out, total_fen=4321, refund_fen=321)
    )
    with pytest.raises(ProviderError) as exc:
        await provider.refund(
            RefundRequest(out_trade_no=out, out_refund_no="R2" + out, total_fen=4321, refund_fen=4001)
        )
    assert exc.value.code == "NOTENOUGH"
    await provider.refund(
        RefundRequest(out_trade_no=out, out_refund_no="R3" + out, total_fen=4321, refund_fen=4000)
    )
    assert (await provider.query(out)).state is TradeState.CLOSED  # fully refunded


async def test_app_pay_order_string(ali, receiver):
    provider, _sandbox, server = ali
    out, created = await create(provider, receiver, channel=Channel.APP, amount=100)
    order_string = created.client_params["orderStr"]
    params = dict(urllib.parse.parse_qsl(order_string))
    assert params["method"] == "alipay.trade.app.pay" and params["sign_type"] == "RSA2"
    # Nothing exists at Alipay until the app submits the order string.
    assert (await provider.query(out)).state is TradeState.NOT_FOUND

    tampered = order_string.replace("1.00", "0.01")
    async with httpx.AsyncClient(base_url=server.url) as client:
        refused = await client.post("/_sandbox/pay", json={"order_string": tampered})
    assert refused.status_code == 400 and refused.json()["error"] == "isv.invalid-signature"

    await control(server, "/_sandbox/pay", order_string=order_string)
    # The merchant's endpoint may also get a late notice of an earlier order (a provider retries
    # a notice its first endpoint never acknowledged): look at this order's.
    [note] = [n for n in receiver.accepted if n.out_trade_no == out]
    assert note.kind is NotificationKind.PAYMENT and note.amount_fen == 100
    assert (await provider.query(out)).state is TradeState.PAID


async def test_close(ali, receiver):
    provider, _sandbox, server = ali
    out, _ = await create(provider, receiver)
    await provider.close(out)
    assert (await provider.query(out)).state is TradeState.CLOSED
    await provider.close(out)  # already closed: fine
    paid, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=paid)
    with pytest.raises(ProviderError) as exc:
        await provider.close(paid)
    assert exc.value.code == "ORDERPAID"


async def test_answer_signed_by_another_key_refused(alipay_sandbox, receiver):
    from payments.sandbox.common import new_rsa_key, pem_public

    sandbox, server = alipay_sandbox
    provider = make_provider(sandbox, server, sandbox.add_app(), alipay_public_key=pem_public(new_rsa_key()))
    with pytest.raises(ProviderError, match="verify"):
        await provider.query("anything")


@pytest.mark.parametrize(
    "forge,reason",
    [("signature", "bad_signature"), ("amount", "bad_signature"), ("merchant", "foreign_merchant")],
)
async def test_forged_notifications_refused(ali, receiver, forge, reason):
    provider, _sandbox, server = ali
    out, _ = await create(provider, receiver)
    result = await control(server, "/_sandbox/pay", out_trade_no=out, forge=forge)
    assert receiver.accepted == [] and receiver.refused[0][0] == reason
    assert result["deliveries"][0]["response"] == "fail"


async def test_gbk_notification_accepted(ali, receiver):
    provider, sandbox, server = ali
    sandbox.notify_charset = "gbk"
    out, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out)
    [note] = [n for n in receiver.accepted if n.out_trade_no == out]
    assert note.raw["subject"] == "电费 亳州供电"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<xml>not a form</xml>",
        b'{"trade_status": "TRADE_SUCCESS"}',
        "charset=utf-8&subject=电费".encode("gbk"),  # raw bytes, not URL-encoded
        urllib.parse.urlencode(
            {"charset": "utf-8", "subject": "电费"}, encoding="gbk"
        ).encode(),  # wrong charset
        b"charset=utf-8&sign_type=RSA&sign=x&app_id=1&trade_no=1&out_trade_no=1&trade_status=TRADE_SUCCESS"
        b"&total_amount=1.00&notify_id=1",  # RSA1 downgrade
        b"charset=utf-8&sign_type=RSA2&sign=%%%&app_id=1",
    ],
)
async def test_malformed_notifications(ali, receiver, body):
    async with httpx.AsyncClient() as client:
        response = await client.post(receiver.notify_url("alipay"), content=body)
    assert response.content == b"fail"
    assert receiver.accepted == [] and len(receiver.refused) == 1


async def test_bill_zip_of_gbk_csvs(ali, receiver):
    provider, sandbox, server = ali
    day = dt.date(2025, 7, 8)
    out, _ = await create(provider, receiver, amount=12345)
    await control(
        server,
        "/_sandbox/pay",
        out_trade_no=out,
        paid_at=dt.datetime(2025, 7, 8, 12, 0, tzinfo=CHINA_TZ).isoformat(),
    )
    bill = await provider.download_bill(day)
    with zipfile.ZipFile(io.BytesIO(bill.content)) as archive:
        detail = next(n for n in archive.namelist() if n.endswith("_业务明细.csv"))
        text = archive.read(detail).decode("gbk")
    assert out in text and "123.45" in text and text.startswith("#支付宝业务明细查询")
    sandbox.bill_tamper = "truncate"
    with pytest.raises(BillIntegrityError):
        await provider.download_bill(day)
    sandbox.bill_tamper = None
    with pytest.raises(BillUnavailable):
        await provider.download_bill(dt.date(2001, 1, 1))
