"""WeChat Pay v3 through wechatpayv3 (public-key mode) against the v3 sandbox."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from dataclasses import replace

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
from payments.providers.wechat_v3 import WeChatPayV3Provider, WeChatV3Config


def make_provider(sandbox, server, merchant, **kw):
    return WeChatPayV3Provider(
        WeChatV3Config(
            appid=merchant.appid,
            mchid=merchant.mchid,
            private_key=merchant.private_key_pem,
            cert_serial_no=merchant.cert_serial_no,
            apiv3_key=merchant.apiv3_key,
            public_key=sandbox.platform_public_key_pem,
            public_key_id=sandbox.public_key_id,
            base_url=server.url,
        ),
        **kw,
    )


@pytest.fixture
def v3(v3_sandbox, receiver):
    sandbox, server = v3_sandbox
    sandbox.bill_tamper = None
    provider = make_provider(sandbox, server, sandbox.add_merchant())
    receiver.providers["wechat_v3"] = provider
    receiver.clear()
    return provider, sandbox, server


async def create(provider, receiver, amount=880, channel=Channel.MINIPROGRAM, **kw):
    out = order_no()
    created = await provider.create(
        CreatePayment(
            out_trade_no=out,
            amount_fen=amount,
            description="燃气费",
            channel=channel,
            notify_url=receiver.notify_url("wechat_v3"),
            payer_id="oV3user" if channel is Channel.MINIPROGRAM else None,
            **kw,
        )
    )
    return out, created


async def test_pay_notify_query_refund(v3, receiver):
    provider, _sandbox, server = v3
    out, created = await create(provider, receiver)
    assert created.client_params["signType"] == "RSA" and created.client_params["paySign"]
    assert (await provider.query(out)).state is TradeState.NOT_PAID

    result = await control(server, "/_sandbox/pay", out_trade_no=out)
    assert result["deliveries"][0]["status_code"] == 204
    [note] = receiver.accepted
    assert note.kind is NotificationKind.PAYMENT and note.trade_state is TradeState.PAID
    assert note.amount_fen == 880 and note.transaction_id == result["transaction_id"]

    status = await provider.query(out)
    assert status.state is TradeState.PAID and status.amount_fen == 880 and status.paid_at is not None

    refund = await provider.refund(
        RefundRequest(
            out_trade_no=out,
            out_refund_no="R" + out,
            total_fen=880,
            refund_fen=880,
            reason="重复缴费",
            notify_url=receiver.notify_url("wechat_v3"),
        )
    )
    assert refund.refund_fen == 880 and refund.state is RefundState.PROCESSING
    await wait_for(lambda: len(receiver.accepted) == 2)
    refund_note = receiver.accepted[1]
    assert refund_note.kind is NotificationKind.REFUND and refund_note.refund_state is RefundState.SUCCEEDED
    assert refund_note.refund_fen == 880 and refund_note.out_refund_no == "R" + out
    assert (await provider.query_refund("R" + out)).state is RefundState.SUCCEEDED

    with pytest.raises(ProviderError) as exc:
        await provider.refund(
            RefundRequest(out_trade_no=out, out_refund_no="R2" + out, total_fen=880, refund_fen=1)
        )
    assert exc.value.code == "NOTENOUGH"


async def test_app_pay_and_close(v3, receiver):
    provider, _sandbox, server = v3
    out, created = await create(provider, receiver, channel=Channel.APP)
    assert created.client_params["prepayid"] == created.prepay_id
    await provider.close(out)
    assert (await provider.query(out)).state is TradeState.CLOSED
    paid, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=paid)
    with pytest.raises(ProviderError) as exc:
        await provider.close(paid)
    assert exc.value.code == "ORDERPAID"
    assert (await provider.query("missing" + secrets.token_hex(3))).state is TradeState.NOT_FOUND


async def test_answers_signed_by_another_platform_key_are_refused(v3_sandbox, receiver):
    from payments.sandbox.common import new_rsa_key, pem_public

    sandbox, server = v3_sandbox
    merchant = sandbox.add_merchant()
    provider = WeChatPayV3Provider(
        WeChatV3Config(
            appid=merchant.appid,
            mchid=merchant.mchid,
            private_key=merchant.private_key_pem,
            cert_serial_no=merchant.cert_serial_no,
            apiv3_key=merchant.apiv3_key,
            public_key=pem_public(new_rsa_key()),
            public_key_id=sandbox.public_key_id,
            base_url=server.url,
        )
    )
    with pytest.raises(ProviderError):
        await create(provider, receiver)


async def test_requests_signed_with_a_wrong_key_are_refused_by_the_sandbox(v3_sandbox, receiver):
    from payments.sandbox.common import new_rsa_key, pem_pkcs8_private

    sandbox, server = v3_sandbox
    merchant = sandbox.add_merchant()
    provider = WeChatPayV3Provider(
        WeChatV3Config(
            appid=merchant.appid,
            mchid=merchant.mchid,
            private_key=pem_pkcs8_private(new_rsa_key()),
            cert_serial_no=merchant.cert_serial_no,
            apiv3_key=merchant.apiv3_key,
            public_key=sandbox.platform_public_key_pem,
            public_key_id=sandbox.public_key_id,
            base_url=server.url,
        )
    )
    with pytest.raises(ProviderError) as exc:
        await create(provider, receiver)
    assert "SIGN_ERROR" in str(exc.value)


@pytest.mark.parametrize(
    "forge,reason",
    [
        ("signature", "bad_signature"),
        ("amount", "bad_signature"),
        ("merchant", "foreign_merchant"),
        ("stale", "stale"),
    ],
)
async def test_forged_and_stale_notifications_refused(v3, receiver, forge, reason):
    provider, _sandbox, server = v3
    out, _ = await create(provider, receiver)
    result = await control(server, "/_sandbox/pay", out_trade_no=out, forge=forge)
    assert receiver.accepted == [] and receiver.refused[0][0] == reason
    assert result["deliveries"][0]["status_code"] >= 400


async def test_replayed_notification_refused(v3, receiver):
    """The same signed message again once applied (a replay): refused, not applied again."""
    provider, _sandbox, server = v3
    out, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out, copies=3, sequential=True)
    assert len(receiver.accepted) == 1
    assert [r[0] for r in receiver.refused] == ["replayed", "replayed"]


async def test_notification_for_another_apiv3_key_does_not_decrypt(v3_sandbox, receiver):
    sandbox, server = v3_sandbox
    merchant = sandbox.add_merchant()
    provider = make_provider(sandbox, server, merchant)
    wrong_key = WeChatPayV3Provider(replace(provider.config, apiv3_key="k" * 32))
    receiver.providers["wechat_v3"] = wrong_key
    receiver.clear()
    out, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out)
    assert receiver.accepted == [] and receiver.refused[0][0] == "bad_signature"


@pytest.mark.parametrize(
    "headers,body",
    [
        ({}, b"{}"),
        (
            {
                "Wechatpay-Timestamp": "1",
                "Wechatpay-Nonce": "n",
                "Wechatpay-Signature": "s",
                "Wechatpay-Serial": "PUB_KEY_ID_X",
            },
            b"{}",
        ),
        (
            {
                "Wechatpay-Timestamp": str(int(time.time())),
                "Wechatpay-Nonce": "n",
                "Wechatpay-Signature": "!!!",
                "Wechatpay-Serial": "{serial}",
            },
            b"<xml>not json</xml>",
        ),
        (
            {
                "Wechatpay-Timestamp": str(int(time.time())),
                "Wechatpay-Nonce": "n",
                "Wechatpay-Signature": "AAAA",
                "Wechatpay-Serial": "{serial}",
            },
            "中文".encode("gbk"),
        ),
    ],
)
async def test_malformed_notifications(v3, receiver, headers, body):
    _provider, sandbox, _ = v3
    headers = {k: v.replace("{serial}", sandbox.public_key_id) for k, v in headers.items()}
    async with httpx.AsyncClient() as client:
        response = await client.post(receiver.notify_url("wechat_v3"), content=body, headers=headers)
    assert response.status_code == 400 and json.loads(response.content)["code"] == "FAIL"
    assert receiver.accepted == [] and len(receiver.refused) == 1


async def test_trade_bill_hash_checked(v3, receiver):
    provider, sandbox, server = v3
    day = dt.date(2025, 5, 6)
    out, _ = await create(provider, receiver, amount=1999)
    await control(
        server,
        "/_sandbox/pay",
        out_trade_no=out,
        paid_at=dt.datetime(2025, 5, 6, 0, 0, 1, tzinfo=CHINA_TZ).isoformat(),
    )
    bill = await provider.download_bill(day)
    text = bill.content.decode()
    assert f"`{out}" in text and "`19.99" in text and bill.sha1
    assert text.splitlines()[-2].startswith("总交易单数")

    sandbox.bill_tamper = "hash"
    with pytest.raises(BillIntegrityError, match="SHA1"):
        await provider.download_bill(day)
    sandbox.bill_tamper = "truncate"
    with pytest.raises(BillIntegrityError):
        await provider.download_bill(day)
    sandbox.bill_tamper = None
    with pytest.raises(BillUnavailable):
        await provider.download_bill(dt.date(2001, 1, 1))
