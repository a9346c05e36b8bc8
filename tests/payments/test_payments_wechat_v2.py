"""WeChat Pay v2 through wechatpy against the v2 sandbox: pay, notify, query, close, refund, bills."""

from __future__ import annotations

import datetime as dt
import secrets

import httpx
import pytest
from payments_helpers import control, order_no, wait_for

from app_api.core.clock import CHINA_TZ
from payments.providers.base import (
    BillUnavailable,
    Channel,
    CreatePayment,
    NotificationKind,
    ProviderError,
    RefundRequest,
    RefundState,
    TradeState,
)
from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config


@pytest.fixture(params=["HMAC-SHA256", "MD5"])
def v2(request, v2_sandbox, receiver):
    sandbox, server = v2_sandbox
    merchant = sandbox.add_merchant()
    provider = WeChatPayV2Provider(
        WeChatV2Config(
            appid=merchant.appid,
            mch_id=merchant.mch_id,
            api_key=merchant.api_key,
            sign_type=request.param,
            base_url=server.url,
        )
    )
    receiver.providers["wechat_v2"] = provider
    receiver.clear()
    return provider, sandbox, server


async def create(provider, receiver, amount=1234, channel=Channel.MINIPROGRAM, **kw):
    out = order_no()
    created = await provider.create(
        CreatePayment(
            out_trade_no=out,
            amount_fen=amount,
            description="水费 2025年10月",
            channel=channel,
            notify_url=receiver.notify_url("wechat_v2"),
            payer_id="oUser123" if channel is Channel.MINIPROGRAM else None,
            client_ip="10.1.2.3",
            **kw,
        )
    )
    return out, created


async def test_pay_notify_query_refund(v2, receiver):
    provider, _sandbox, server = v2
    out, created = await create(provider, receiver)
    assert created.prepay_id and created.client_params["package"] == f"prepay_id={created.prepay_id}"
    assert created.client_params["signType"] == provider.config.sign_type

    status = await provider.query(out)
    assert status.state is TradeState.NOT_PAID

    result = await control(server, "/_sandbox/pay", out_trade_no=out)
    assert result["deliveries"][0]["status_code"] == 200
    assert "SUCCESS" in result["deliveries"][0]["response"]
    [note] = receiver.accepted
    assert note.kind is NotificationKind.PAYMENT and note.trade_state is TradeState.PAID
    assert note.amount_fen == 1234 and note.out_trade_no == out
    assert note.transaction_id == result["transaction_id"]
    assert note.paid_at is not None and note.paid_at.tzinfo is not None

    status = await provider.query(out)
    assert status.state is TradeState.PAID and status.amount_fen == 1234
    assert status.transaction_id == note.transaction_id

    refund = await provider.refund(
        RefundRequest(
            out_trade_no=out,
            out_refund_no="R" + out,
            total_fen=1234,
            refund_fen=234,
            notify_url=receiver.notify_url("wechat_v2"),
        )
    )
    assert refund.refund_fen == 234 and refund.refund_id
    await wait_for(lambda: len(receiver.accepted) == 2)
    refund_note = receiver.accepted[-1]
    assert refund_note.kind is NotificationKind.REFUND
    assert refund_note.refund_fen == 234 and refund_note.refund_state is RefundState.SUCCEEDED
    assert refund_note.out_refund_no == "R" + out

    # Same refund number again: no second refund at the provider.
    again = await provider.refund(
        RefundRequest(out_trade_no=out, out_refund_no="R" + out, total_fen=1234, refund_fen=234)
    )
    assert again.refund_id == refund.refund_id
    with pytest.raises(ProviderError) as too_much:
        await provider.refund(
            RefundRequest(out_trade_no=out, out_refund_no="R2" + out, total_fen=1234, refund_fen=1001)
        )
    assert too_much.value.code == "NOTENOUGH"
    assert (await provider.query(out)).state is TradeState.REFUNDED


async def test_app_pay_params_and_close(v2, receiver):
    provider, _sandbox, _server = v2
    out, created = await create(provider, receiver, channel=Channel.APP)
    assert created.client_params["prepayid"] == created.prepay_id
    assert created.client_params["partnerid"] == provider.merchant_id
    await provider.close(out)
    assert (await provider.query(out)).state is TradeState.CLOSED
    await provider.close(out)  # closing twice is harmless


async def test_close_paid_order_is_refused(v2, receiver):
    provider, _sandbox, server = v2
    out, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out)
    with pytest.raises(ProviderError) as exc:
        await provider.close(out)
    assert exc.value.code == "ORDERPAID"


async def test_unknown_order_query(v2):
    provider, _, _ = v2
    assert (await provider.query("NOPE" + secrets.token_hex(4))).state is TradeState.NOT_FOUND


@pytest.mark.parametrize(
    "forge,reason",
    [("signature", "bad_signature"), ("amount", "bad_signature"), ("merchant", "foreign_merchant")],
)
async def test_forged_notifications_refused(v2, receiver, forge, reason):
    provider, _sandbox, server = v2
    out, _ = await create(provider, receiver)
    result = await control(server, "/_sandbox/pay", out_trade_no=out, forge=forge)
    assert receiver.accepted == []
    assert receiver.refused[0][0] == reason
    assert "FAIL" in result["deliveries"][0]["response"]


async def test_duplicated_notifications_all_verify(v2, receiver):
    provider, _sandbox, server = v2
    out, _ = await create(provider, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out, copies=5)
    assert len(receiver.accepted) == 5
    assert len({n.dedupe_key for n in receiver.accepted}) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"not xml at all",
        b'{"json": true}',
        b"<xml><return_code>SUCCESS</return_code></xml>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><xml><a>&a;</a></xml>',
        "<xml><return_code>SUCCESS</return_code><total_fee>１</total_fee></xml>".encode("gbk"),
        b"",
    ],
)
async def test_malformed_notifications(v2, receiver, body):
    _provider, _, _ = v2
    async with httpx.AsyncClient() as client:
        response = await client.post(receiver.notify_url("wechat_v2"), content=body)
    assert response.status_code == 200 and b"FAIL" in response.content
    assert receiver.accepted == [] and len(receiver.refused) == 1


async def test_md5_notification_refused_when_we_sign_with_hmac(v2_sandbox, receiver):
    """A downgrade: the notification is MD5-signed with the right key, we use HMAC-SHA256."""
    sandbox, server = v2_sandbox
    merchant = sandbox.add_merchant()
    md5_side = WeChatPayV2Provider(
        WeChatV2Config(
            appid=merchant.appid,
            mch_id=merchant.mch_id,
            api_key=merchant.api_key,
            sign_type="MD5",
            base_url=server.url,
        )
    )
    hmac_side = WeChatPayV2Provider(
        WeChatV2Config(
            appid=merchant.appid,
            mch_id=merchant.mch_id,
            api_key=merchant.api_key,
            sign_type="HMAC-SHA256",
            base_url=server.url,
        )
    )
    receiver.providers["wechat_v2"] = hmac_side
    receiver.clear()
    out, _ = await create(md5_side, receiver)
    await control(server, "/_sandbox/pay", out_trade_no=out)
    assert receiver.accepted == [] and receiver.refused[0][0] == "bad_signature"


async def test_daily_bill(v2, receiver):
    provider, _sandbox, server = v2
    day = dt.date(2025, 3, 4)
    paid_at = dt.datetime(2025, 3, 4, 23, 59, 30, tzinfo=CHINA_TZ)
    out, _ = await create(provider, receiver, amount=5000)
    await control(server, "/_sandbox/pay", out_trade_no=out, paid_at=paid_at.isoformat())
    bill = await provider.download_bill(day)
    text = bill.content.decode()
    lines = text.strip().splitlines()
    assert lines[0].startswith("交易时间,公众账号ID")
    assert lines[-2].startswith("总交易单数")
    assert any(f"`{out}" in line and "`50.00" in line for line in lines[1:-2])
    with pytest.raises(BillUnavailable):
        await provider.download_bill(dt.date(2001, 1, 1))


async def test_late_notification_arrives_after_the_delay(v2, receiver):
    provider, _sandbox, server = v2
    out, _ = await create(provider, receiver)
    result = await control(server, "/_sandbox/pay", out_trade_no=out, delay_s=0.5)
    assert result["deliveries"] == [] and receiver.accepted == []
    await wait_for(lambda: any(n.out_trade_no == out for n in receiver.accepted))
    assert [n.out_trade_no for n in receiver.accepted if n.out_trade_no == out] == [out]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (b"<xml><a>1</a><b><![CDATA[x y]]></b></xml>", {"a": "1", "b": "x y"}),
        (b"<xml><a> 1 </a><b></b><c>  </c></xml>", {"a": "1"}),  # stripped; empty ones left out
        ("<xml><a>水费</a><b>&amp;&lt;</b></xml>".encode(), {"a": "水费", "b": "&<"}),
        (b"<?xml version='1.0' encoding='utf-8'?><xml><a>x\n y</a></xml>", {"a": "x\n y"}),
        (b"<xml><a></a></xml>", {}),
    ],
)
def test_flat_xml_read_as_before(body, fields):
    from payments.providers.wechat_v2 import parse_xml

    assert parse_xml(body) == fields


@pytest.mark.parametrize(
    "body",
    [
        b"<xml></xml>",
        b"<xml> only text </xml>",
        b"<root><a>1</a></root>",
        b"<xml><a>1</a><a>2</a></xml>",  # repeated
        b"<xml><a></a><a>2</a></xml>",
        b"<xml><a>1</a><a></a></xml>",
        b"<xml><a k='v'>1</a></xml>",  # an attribute on a field
        b"<xml><a><b>1</b></a></xml>",  # nested
        b"<xml><a>1<b/></a></xml>",
        b"<xml><a>1</a>",  # unclosed
        b"<xml><a>1</a></xml><b/>",
    ],
)
def test_flat_xml_refuses_structure(body):
    from payments.providers.base import MalformedNotification
    from payments.providers.wechat_v2 import parse_xml

    with pytest.raises(MalformedNotification):
        parse_xml(body)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be"])
def test_a_dtd_is_refused_in_any_encoding(encoding):
    """Entity declarations (expansion bombs, external entities) are refused before anything is read,
    also where the byte check cannot see them (UTF-16)."""
    from payments.providers.base import MalformedNotification
    from payments.providers.wechat_v2 import parse_xml

    text = f'<?xml version="1.0" encoding="{encoding.upper()}"?>'
    text += '<!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><return_code>&a;</return_code></xml>'
    with pytest.raises(MalformedNotification, match=r"DTD|not XML"):
        parse_xml(text.encode(encoding))
