"""The ledger end to end: the app's notify endpoints, the real SDKs, the sandboxes, the outbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

import pytest
import sqlalchemy as sa
from payments_helpers import PAID_CALLS, control, wait_for
from sqlmodel import select

from app_api.core.db import session_scope, utcnow
from payments.errors import IllegalTransition, PurposeAlreadyPaid
from payments.ledger import transition
from payments.models import OrderStatus, PaymentEvent, PaymentNotification, PaymentOrder, PaymentRefund
from payments.orders import create_order
from payments.refunds import request_refund
from payments.sweeps import sweep_order

PROVIDERS = ["wechat_v2", "wechat_v3", "alipay"]


async def account_id(client, headers) -> str:
    return (await client.get("/api/v1/me", headers=headers)).json()["id"]


async def new_order(
    account: str,
    provider: str,
    amount: int = 2580,
    ref: str | None = None,
    channel: str = "miniprogram",
    ttl_s: int | None = None,
) -> PaymentOrder:
    async with session_scope() as s:
        return await create_order(
            s,
            account_id=account,
            purpose="testcol.bill",
            purpose_ref=ref or "B" + secrets.token_hex(6),
            amount_fen=amount,
            description="水费 2025年10月",
            provider=provider,
            channel=channel,
            ttl_s=ttl_s,
        )


async def load(order_id: str) -> PaymentOrder:
    async with session_scope() as s:
        return (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).one()


async def wait_status(order_id: str, status: OrderStatus, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await load(order_id)).status != status:
        assert loop.time() < deadline, f"order never reached {status}"
        await asyncio.sleep(0.02)


async def events(order_id: str) -> list[PaymentEvent]:
    async with session_scope() as s:
        return list(
            (
                await s.exec(
                    select(PaymentEvent)
                    .where(PaymentEvent.order_id == order_id)
                    .order_by(PaymentEvent.created_at)
                )
            ).all()
        )


async def pay_at_sandbox(ledger, provider: str, order: PaymentOrder, client_params: dict, **delivery):
    server = ledger.servers[provider]
    if provider == "alipay" and "orderStr" in client_params:
        return await control(server, "/_sandbox/pay", order_string=client_params["orderStr"], **delivery)
    return await control(server, "/_sandbox/pay", out_trade_no=order.out_trade_no, **delivery)


async def start(client, headers, order, provider):
    payer = "2088102177000001" if provider == "alipay" else "oUser" + secrets.token_hex(4)
    r = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay", headers=headers, json={"payer_id": payer}
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_paid_once_and_column_told_once(ledger, client, login, provider):
    headers = await login()
    order = await new_order(await account_id(client, headers), provider)
    body = await start(client, headers, order, provider)
    assert body["order"]["status"] == "paying" and body["client_params"]

    result = await pay_at_sandbox(ledger, provider, order, body["client_params"], copies=4)
    assert len(result["deliveries"]) == 4
    if provider == "wechat_v3":  # exact replays of one signed message: the 3 copies are refused as replays
        assert all(d["status_code"] in (200, 204) for d in result["deliveries"])
    paid = await load(order.id)
    assert paid.status == OrderStatus.PAID and paid.provider_txn_id == result["transaction_id"]
    await wait_for(lambda: (order.id, order.purpose_ref) in PAID_CALLS)
    assert PAID_CALLS.count((order.id, order.purpose_ref)) == 1
    kinds = [(e.from_status, e.to_status) for e in await events(order.id) if e.kind == "transition"]
    assert kinds == [("created", "paying"), ("paying", "paid")]
    async with session_scope() as s:
        stored = (
            await s.exec(select(PaymentNotification).where(PaymentNotification.order_id == order.id))
        ).all()
    assert len(stored) == 1 and stored[0].outcome == "applied"
    r = await client.get(f"/api/v1/payments/orders/{order.id}", headers=headers)
    assert r.json()["status"] == "paid"
    # The same purpose cannot be opened again.
    with pytest.raises(PurposeAlreadyPaid):
        await new_order(paid.account_id, provider, ref=order.purpose_ref)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("forge", ["signature", "amount", "merchant", "amount_signed"])
async def test_forged_or_mismatched_never_credited(ledger, client, login, provider, forge):
    headers = await login()
    order = await new_order(await account_id(client, headers), provider)
    body = await start(client, headers, order, provider)
    await pay_at_sandbox(ledger, provider, order, body["client_params"], forge=forge)
    after = await load(order.id)
    assert after.status == OrderStatus.PAYING and after.provider_txn_id is None
    flagged = [e for e in await events(order.id) if e.kind == "flagged"]
    assert bool(flagged) == (forge == "amount_signed")
    assert (order.id, order.purpose_ref) not in PAID_CALLS


async def test_stale_v3_notification_refused(ledger, client, login):
    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v3")
    body = await start(client, headers, order, "wechat_v3")
    result = await pay_at_sandbox(ledger, "wechat_v3", order, body["client_params"], forge="stale")
    assert result["deliveries"][0]["status_code"] == 400
    assert (await load(order.id)).status == OrderStatus.PAYING


async def test_late_notification_after_sweep_credits_once(ledger, client, login):
    """Held back notification; the sweep finds the payment first; the late notification changes nothing."""
    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v2")
    body = await start(client, headers, order, "wechat_v2")
    await pay_at_sandbox(ledger, "wechat_v2", order, body["client_params"], hold=True)
    assert (await load(order.id)).status == OrderStatus.PAYING
    async with session_scope() as s:
        assert await sweep_order(s, order_id=order.id) == "applied"
    assert (await load(order.id)).status == OrderStatus.PAID
    released = await control(ledger.servers["wechat_v2"], "/_sandbox/release")
    assert "SUCCESS" in released["deliveries"][0]["response"]
    await wait_for(lambda: (order.id, order.purpose_ref) in PAID_CALLS)
    assert PAID_CALLS.count((order.id, order.purpose_ref)) == 1
    transitions = [e.to_status for e in await events(order.id) if e.kind == "transition"]
    assert transitions.count("paid") == 1


async def test_out_of_order_notifications_for_two_orders(ledger, client, login):
    headers = await login()
    acc = await account_id(client, headers)
    first, second = await new_order(acc, "alipay"), await new_order(acc, "alipay")
    for order in (first, second):
        body = await start(client, headers, order, "alipay")
        await pay_at_sandbox(ledger, "alipay", order, body["client_params"], hold=True)
    await control(ledger.servers["alipay"], "/_sandbox/release", order="reverse")
    assert (await load(first.id)).status == OrderStatus.PAID
    assert (await load(second.id)).status == OrderStatus.PAID


async def test_unknown_order_notification_flagged(ledger, client, login):
    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v2")
    body = await start(client, headers, order, "wechat_v2")
    async with session_scope() as s:  # the order vanishes from our side (another system's order number)
        await s.exec(
            sa.update(PaymentOrder)
            .where(PaymentOrder.id == order.id)
            .values(out_trade_no="GONE" + secrets.token_hex(6))
        )
    result = await pay_at_sandbox(ledger, "wechat_v2", order, body["client_params"])
    assert "SUCCESS" in result["deliveries"][0]["response"]
    async with session_scope() as s:
        note = (
            await s.exec(
                select(PaymentNotification).where(PaymentNotification.out_trade_no == order.out_trade_no)
            )
        ).one()
    assert note.outcome == "unknown_order" and note.order_id is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refunds_partial_full_idempotent(ledger, client, login, provider):
    headers = await login()
    finance = await login(roles=["finance"])
    order = await new_order(await account_id(client, headers), provider, amount=1000)
    body = await start(client, headers, order, provider)
    await pay_at_sandbox(ledger, provider, order, body["client_params"])
    url = f"/api/v1/payments/finance/orders/{order.id}/refunds"

    r = await client.post(
        url,
        headers=finance,
        json={"amount_fen": 300, "out_refund_no": "RF" + order.out_trade_no, "reason": "多缴退回"},
    )
    assert r.status_code == 202, r.text
    again = await client.post(
        url, headers=finance, json={"amount_fen": 300, "out_refund_no": "RF" + order.out_trade_no}
    )
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]  # the same refund
    conflict = await client.post(
        url, headers=finance, json={"amount_fen": 301, "out_refund_no": "RF" + order.out_trade_no}
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "payments.refund_number_conflict"
    too_much = await client.post(
        url, headers=finance, json={"amount_fen": 701, "out_refund_no": "RX" + order.out_trade_no}
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "payments.refund_exceeds_paid"

    await wait_status(order.id, OrderStatus.PARTIALLY_REFUNDED)
    r = await client.post(
        url, headers=finance, json={"amount_fen": 700, "out_refund_no": "RG" + order.out_trade_no}
    )
    assert r.status_code == 202
    await wait_status(order.id, OrderStatus.REFUNDED)
    final = await load(order.id)
    assert final.status == OrderStatus.REFUNDED and final.refunded_fen == 1000
    async with session_scope() as s:
        refunds = (await s.exec(select(PaymentRefund).where(PaymentRefund.order_id == order.id))).all()
    assert sorted(r.amount_fen for r in refunds) == [300, 700]
    assert all(r.status == "succeeded" for r in refunds)


async def test_access_rules(ledger, client, login):
    alice, bob, finance = await login(), await login(), await login(roles=["finance"])
    order = await new_order(await account_id(client, alice), "wechat_v2")
    assert (await client.get(f"/api/v1/payments/orders/{order.id}", headers=alice)).status_code == 200
    hidden = await client.get(f"/api/v1/payments/orders/{order.id}", headers=bob)
    assert hidden.status_code == 404 and hidden.json()["code"] == "payments.order_not_found"
    assert (
        await client.post(f"/api/v1/payments/orders/{order.id}/pay", headers=bob, json={})
    ).status_code == 404
    assert (await client.get("/api/v1/payments/orders", headers=bob)).json()["items"] == []
    mine = (await client.get("/api/v1/payments/orders", headers=alice)).json()["items"]
    assert order.id in [o["id"] for o in mine]
    denied = await client.get("/api/v1/payments/finance/orders", headers=alice)
    assert denied.status_code == 403
    assert (
        await client.get(
            "/api/v1/payments/finance/orders", headers=finance, params={"out_trade_no": order.out_trade_no}
        )
    ).json()["items"][0]["id"] == order.id
    assert (
        await client.get("/api/v1/payments/finance/reconciliation/runs", headers=alice)
    ).status_code == 403
    assert (await client.get("/api/v1/payments/finance/orders")).status_code == 401


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_sweep_closes_expired_orders_there_and_here(ledger, client, login, provider):
    headers = await login()
    order = await new_order(await account_id(client, headers), provider, ttl_s=60)
    await start(client, headers, order, provider)
    async with session_scope() as s:
        assert await sweep_order(s, order_id=order.id) == "waiting"
        await s.exec(
            sa.update(PaymentOrder)
            .where(PaymentOrder.id == order.id)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    async with session_scope() as s:
        assert await sweep_order(s, order_id=order.id) == "closed"
    assert (await load(order.id)).status == OrderStatus.CLOSED
    status = await ledger.providers[provider].query(order.out_trade_no)
    assert status.state.value in ("closed", "not_found")


async def test_resident_close_and_illegal_transitions(ledger, client, login):
    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v3")
    await start(client, headers, order, "wechat_v3")
    r = await client.post(f"/api/v1/payments/orders/{order.id}/close", headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    again = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay", headers=headers, json={"payer_id": "o1"}
    )
    assert again.status_code == 409 and again.json()["code"] == "payments.illegal_transition"
    async with session_scope() as s:
        locked = (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order.id))).one()
        with pytest.raises(IllegalTransition):
            await transition(s, locked, OrderStatus.REFUNDED, source="test")


async def test_bad_notify_requests(ledger, client):
    for provider, body, expect in [("wechat_v2", b"garbage", b"FAIL"), ("alipay", b"a=b", b"fail")]:
        r = await client.post(f"/api/v1/payments/notify/{provider}", content=body)
        assert r.status_code == 200 and expect in r.content
    r = await client.post("/api/v1/payments/notify/wechat_v3", content=b"{}")
    assert r.status_code == 400
    assert (await client.post("/api/v1/payments/notify/paypal", content=b"x")).status_code == 422


async def test_foreign_merchant_notification_is_audited(ledger, client, login):
    from app_api.platform.audit.models import AuditEvent

    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v3")
    body = await start(client, headers, order, "wechat_v3")
    async with session_scope() as s:
        before = len(
            (
                await s.exec(
                    select(AuditEvent.seq).where(AuditEvent.action == "payments.notification_flagged")
                )
            ).all()
        )
    await pay_at_sandbox(ledger, "wechat_v3", order, body["client_params"], forge="merchant")
    async with session_scope() as s:
        flagged = (
            await s.exec(
                select(AuditEvent)
                .where(AuditEvent.action == "payments.notification_flagged")
                .order_by(AuditEvent.seq)
            )
        ).all()
    assert len(flagged) == before + 1 and flagged[-1].data["reason"] == "foreign_merchant"
    assert (await load(order.id)).status == OrderStatus.PAYING


async def test_refund_made_outside_the_ledger_is_flagged_not_applied(ledger, client, login):
    """A refund done in the merchant console: its notification names a refund number we never issued."""
    from payments.providers.base import RefundRequest
    from payments.registry import notify_url

    headers = await login()
    order = await new_order(await account_id(client, headers), "wechat_v2", amount=800)
    body = await start(client, headers, order, "wechat_v2")
    await pay_at_sandbox(ledger, "wechat_v2", order, body["client_params"])
    await ledger.providers["wechat_v2"].refund(
        RefundRequest(
            out_trade_no=order.out_trade_no,
            out_refund_no="CONSOLE" + secrets.token_hex(4),
            total_fen=800,
            refund_fen=100,
            notify_url=notify_url("wechat_v2"),
        )
    )

    async def flagged() -> list[PaymentEvent]:
        return [e for e in await events(order.id) if e.kind == "flagged"]

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while not await flagged():
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    assert (await flagged())[0].data["reason"] == "unknown_refund"
    after = await load(order.id)
    assert after.status == OrderStatus.PAID and after.refunded_fen == 0


async def test_column_rule_refund_and_late_handler(ledger, client, login):
    """A purpose whose column registers its handler late: the job retries; the column is told once."""
    from payments.hooks import on_paid
    from payments.tasks import notify_column

    headers = await login()
    acc = await account_id(client, headers)
    async with session_scope() as s:
        order = await create_order(
            s,
            account_id=acc,
            purpose="latecol.fee",
            purpose_ref="L1" + secrets.token_hex(3),
            amount_fen=600,
            description="办证费",
            provider="alipay",
            channel="miniprogram",
        )
    body = await start(client, headers, order, "alipay")
    await pay_at_sandbox(ledger, "alipay", order, body["client_params"])
    assert (await load(order.id)).status == OrderStatus.PAID
    with pytest.raises(LookupError):  # no handler yet: the job fails and will be retried
        await notify_column(order.id)
    assert (await load(order.id)).column_notified_at is None
    calls: list[str] = []

    @on_paid("latecol.fee")
    async def fee_paid(session, paid) -> None:
        calls.append(paid.order_id)

    # This call and the broker's own retry of the failed job race: whichever claims first tells
    # the column; the other finds nothing left to do.
    await notify_column(order.id)
    await wait_for(lambda: calls == [order.id])
    assert await notify_column(order.id) is False  # a retried or duplicated job changes nothing
    await asyncio.sleep(0.3)
    assert calls == [order.id]
    assert (await load(order.id)).column_notified_at is not None

    # The column's own rule refunds part of it (e.g. an overpayment found by the biller).
    async with session_scope() as s:
        refund, created = await request_refund(
            s,
            order_id=order.id,
            amount_fen=100,
            out_refund_no="COL" + order.out_trade_no,
            reason="多缴部分退回",
            source="column:latecol",
            actor_id=None,
        )
    assert created
    await wait_status(order.id, OrderStatus.PARTIALLY_REFUNDED)
    async with session_scope() as s:
        again, created_again = await request_refund(
            s,
            order_id=order.id,
            amount_fen=100,
            out_refund_no="COL" + order.out_trade_no,
            reason=None,
            source="column:latecol",
            actor_id=None,
        )
    assert not created_again and again.id == refund.id
    assert (await load(order.id)).refunded_fen == 100
