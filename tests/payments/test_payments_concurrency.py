"""50 concurrent copies of one notification: the order is credited once and the column told once."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from payments_helpers import PAID_CALLS, control, wait_for
from sqlmodel import select

from app_api.core.db import session_scope
from payments.models import PaymentEvent, PaymentNotification, PaymentOrder
from payments.orders import create_order


@pytest.mark.parametrize("provider", ["wechat_v2", "alipay"])
async def test_fifty_concurrent_copies(ledger, client, login, is_postgres, provider):
    headers = await login()
    me = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with session_scope() as s:
        order = await create_order(
            s,
            account_id=me,
            purpose="testcol.bill",
            purpose_ref="C" + secrets.token_hex(6),
            amount_fen=9900,
            description="燃气费",
            provider=provider,
            channel="miniprogram",
        )
    r = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay",
        headers=headers,
        json={"payer_id": "2088102177000002" if provider == "alipay" else "oC"},
    )
    assert r.status_code == 200
    result = await control(
        ledger.servers[provider], "/_sandbox/pay", out_trade_no=order.out_trade_no, copies=50
    )
    codes = [d["status_code"] for d in result["deliveries"]]
    assert len(codes) == 50
    if is_postgres:
        assert codes == [200] * 50, codes  # every copy acknowledged: none lost to a lock error
    await wait_for(lambda: (order.id, order.purpose_ref) in PAID_CALLS)
    async with session_scope() as s:
        paid = (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order.id))).one()
        transitions = (
            await s.exec(
                select(PaymentEvent).where(
                    PaymentEvent.order_id == order.id, PaymentEvent.to_status == "paid"
                )
            )
        ).all()
        stored = (
            await s.exec(select(PaymentNotification).where(PaymentNotification.order_id == order.id))
        ).all()
    assert paid.status == "paid" and len(transitions) == 1
    assert len(stored) == 1 and stored[0].times_received == sum(1 for c in codes if c == 200)
    await asyncio.sleep(0.3)  # a second handler run, if there were one, would have happened by now
    assert PAID_CALLS.count((order.id, order.purpose_ref)) == 1
