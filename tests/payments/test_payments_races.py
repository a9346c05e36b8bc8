"""Money paths under concurrency, and notifications whose first processing failed (issue 14).

Requests are sent truly at the same moment: separate HTTP connections to the served app, gathered.
"""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest
import sqlalchemy as sa
from payments_helpers import PAID_CALLS, control, wait_for
from sqlmodel import select

from app_api.core.db import session_scope
from payments import notifications
from payments.models import OrderStatus, PaymentNotification, PaymentOrder, PaymentRefund
from payments.orders import create_order

ROUNDS = 4
# Each provider's documented answers (what its servers read as "not received" / "received").
FAILED = {
    "wechat_v3": (400, '{"code": "FAIL", "message": "processing failed"}'),
    "wechat_v2": (
        200,
        "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[processing failed]]></return_msg></xml>",
    ),
    "alipay": (200, "fail"),
}
SUCCEEDED = {
    "wechat_v3": (204, ""),
    "wechat_v2": (
        200,
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>",
    ),
    "alipay": (200, "success"),
}


async def paid_order(ledger, client, headers, provider: str, amount: int) -> PaymentOrder:
    me = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with session_scope() as s:
        order = await create_order(
            s,
            account_id=me,
            purpose="testcol.bill",
            purpose_ref="R" + secrets.token_hex(6),
            amount_fen=amount,
            description="物业费",
            provider=provider,
            channel="miniprogram",
        )
    await place_and_pay(ledger, client, headers, order, provider)
    await wait_status(order.id, OrderStatus.PAID)
    return order


async def place_and_pay(ledger, client, headers, order: PaymentOrder, provider: str, **delivery) -> dict:
    payer = "2088102177000001" if provider == "alipay" else "oRace" + secrets.token_hex(4)
    r = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay", headers=headers, json={"payer_id": payer}
    )
    assert r.status_code == 200, r.text
    params = r.json()["client_params"]
    server = ledger.servers[provider]
    if provider == "alipay" and "orderStr" in params:
        return await control(server, "/_sandbox/pay", order_string=params["orderStr"], **delivery)
    return await control(server, "/_sandbox/pay", out_trade_no=order.out_trade_no, **delivery)


async def load(order_id: str) -> PaymentOrder:
    async with session_scope() as s:
        return (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).one()


async def wait_status(order_id: str, status: OrderStatus, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await load(order_id)).status != status:
        assert loop.time() < deadline, f"order never reached {status}"
        await asyncio.sleep(0.02)


async def refunds_of(order_id: str) -> list[PaymentRefund]:
    async with session_scope() as s:
        return list((await s.exec(select(PaymentRefund).where(PaymentRefund.order_id == order_id))).all())


async def at_once(ledger, headers, url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Each body on its own connection, all sent together."""
    clients = [httpx.AsyncClient(base_url=ledger.url, timeout=60) for _ in bodies]
    try:
        return list(
            await asyncio.gather(*(c.post(url, headers=headers, json=b) for c, b in zip(clients, bodies)))
        )
    finally:
        for c in clients:
            await c.aclose()


async def test_same_refund_number_at_once_is_one_refund(ledger, client, login):
    headers, finance = await login(), await login(roles=["finance"])
    for _ in range(ROUNDS):
        order = await paid_order(ledger, client, headers, "wechat_v2", amount=1000)
        url = f"/api/v1/payments/finance/orders/{order.id}/refunds"
        body = {"amount_fen": 400, "out_refund_no": "RS" + order.out_trade_no, "reason": "重复提交"}
        answers = await at_once(ledger, finance, url, [body, body, body])
        codes = sorted(r.status_code for r in answers)
        assert all(200 <= c < 300 for c in codes), [r.text for r in answers]
        assert codes.count(202) == 1  # recorded once; the repeats are answered with it (200)
        assert len({r.json()["id"] for r in answers}) == 1
        assert [r.amount_fen for r in await refunds_of(order.id)] == [400]

        # The same number again later, for another amount: refused, in Chinese, nothing recorded.
        other = await client.post(url, headers=finance, json={**body, "amount_fen": 500})
        assert other.status_code == 409, other.text
        problem = other.json()
        assert problem["code"] == "payments.refund_number_conflict"
        assert "退款单号" in problem["title"] and "4.00" in problem["detail"]
        await wait_status(order.id, OrderStatus.PARTIALLY_REFUNDED)
        assert (await load(order.id)).refunded_fen == 400
        assert len(await refunds_of(order.id)) == 1


async def test_two_refunds_over_the_paid_amount_at_once(ledger, client, login):
    """Two 60 % refunds of one paid order sent together: exactly one is accepted."""
    headers, finance = await login(), await login(roles=["finance"])
    for n in range(ROUNDS):
        order = await paid_order(ledger, client, headers, "wechat_v2", amount=1000)
        url = f"/api/v1/payments/finance/orders/{order.id}/refunds"
        bodies = [{"amount_fen": 600, "out_refund_no": f"R{n}{k}{order.out_trade_no}"} for k in "AB"]
        answers = await at_once(ledger, finance, url, bodies)
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 409], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 409).json()
        assert refused["code"] == "payments.refund_exceeds_paid" and refused["refundable_fen"] == 400
        recorded = await refunds_of(order.id)
        assert [r.amount_fen for r in recorded] == [600]  # the ledger never promised more than was paid
        await wait_status(order.id, OrderStatus.PARTIALLY_REFUNDED)
        assert (await load(order.id)).refunded_fen == 600


@pytest.mark.parametrize("provider", ["wechat_v3", "wechat_v2", "alipay"])
async def test_retry_after_a_failed_first_processing_is_applied(ledger, client, login, monkeypatch, provider):
    """The database fails while the first delivery is applied: the provider's identical retry applies it."""
    headers = await login()
    me = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with session_scope() as s:
        order = await create_order(
            s,
            account_id=me,
            purpose="testcol.bill",
            purpose_ref="F" + secrets.token_hex(6),
            amount_fen=3300,
            description="燃气费",
            provider=provider,
            channel="miniprogram",
        )
    failures: list[str] = []
    batch, single = notifications.apply_notifications, notifications.apply_notification

    def fail_once(name, real):
        async def wrapper(*args, **kwargs):
            if name not in failures:
                failures.append(name)
                raise sa.exc.OperationalError("UPDATE payments_order", {}, Exception("database is locked"))
            return await real(*args, **kwargs)

        return wrapper

    # The batch fails, and so does the one-by-one fallback: the first delivery is answered with an error.
    monkeypatch.setattr(notifications, "apply_notifications", fail_once("batch", batch))
    monkeypatch.setattr(notifications, "apply_notification", fail_once("single", single))
    result = await place_and_pay(ledger, client, headers, order, provider, retries=2)
    assert failures == ["batch", "single"]
    paid = await load(order.id)
    assert paid.status == OrderStatus.PAID and paid.provider_txn_id == result["transaction_id"]
    # The provider was told "not received" (its documented failure answer), then "received".
    answers = [(d["status_code"], d["response"]) for d in result["deliveries"]]
    assert answers == [FAILED[provider], SUCCEEDED[provider]], answers
    await wait_for(lambda: (order.id, order.purpose_ref) in PAID_CALLS)
    async with session_scope() as s:
        stored = (
            await s.exec(select(PaymentNotification).where(PaymentNotification.order_id == order.id))
        ).all()
    assert len(stored) == 1 and stored[0].outcome == "applied" and stored[0].times_received == 1
    await asyncio.sleep(0.2)  # a second handler run, if there were one, would have happened by now
    assert PAID_CALLS.count((order.id, order.purpose_ref)) == 1
