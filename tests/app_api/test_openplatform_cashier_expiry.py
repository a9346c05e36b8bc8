"""The cashier's expiry and refund notices, over HTTP against the real app and the payment sandboxes:
an unpaid order closes at its deadline and its column is told ``order.closed`` once (signed, through
the notice outbox), even with two sweeps at once and Redis wiped; paying it is then refused, and a
payment that arrives after the deadline is refunded; a finished refund is told to the column once."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import col, func, select

from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs import outbox
from app_api.platform.openplatform import cashier_sweep
from app_api.platform.openplatform.cashier_models import CashierNotice, CashierOrder, CashierRefund
from tests.app_api.test_openplatform_cashier import (
    ORDERS,
    Receiver,
    _audited,
    _call,
    _cashier,
    _order,
    _refunds_reach,
    _subject,
    http,
    pay_sandbox,
    receiver,
)
from tests.columns.utilities.utilities_helpers import pay_at_provider, wait_until
from tests.conftest import LoginFn

__all__ = ["http", "pay_sandbox", "receiver"]


def told(rec: Receiver, order_id: str, event: str) -> list[dict[str, Any]]:
    return [n for n in rec.for_order(order_id, acked=True) if n["event"] == event]


async def notices(order_id: str, event: str | None = None) -> int:
    async with sessionmaker()() as s:
        q = select(func.count()).select_from(CashierNotice).where(CashierNotice.order_id == order_id)
        if event:
            q = q.where(CashierNotice.event == event)
        return int((await s.exec(q)).one())


async def expire(order_id: str) -> None:
    async with session_scope() as s:
        await s.exec(
            sa.update(CashierOrder)
            .where(col(CashierOrder.id) == order_id)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )


async def test_an_unpaid_order_closes_once_and_cannot_be_paid(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    r = await _call(http, c, "POST", ORDERS, _order(sub, 800))
    assert r.status_code == 201, r.text
    order = r.json()
    created = dt.datetime.fromisoformat(order["created_at"])
    expires = dt.datetime.fromisoformat(order["expires_at"])
    assert dt.timedelta(minutes=29) < expires - created <= dt.timedelta(minutes=30)
    seen = (await client.get(order["pay_path"], headers=resident)).json()
    assert seen["expires_at"] is not None
    other = (await _call(http, c, "POST", ORDERS, _order(sub, 900))).json()

    await expire(order["id"])
    # Redis is emptied before the sweeps: the schedule, the order and the notice live in the database.
    from app_api.core.redis import get_redis

    await (await get_redis()).flushdb()
    # Two schedulers' sweeps at once, then a late third: the order is closed and owed a notice once.
    runs = await asyncio.gather(cashier_sweep.close_expired(), cashier_sweep.close_expired())
    assert sum(runs) >= 1
    await cashier_sweep.close_expired()
    assert await notices(order["id"], "order.closed") == 1

    async def closed_told() -> bool:
        await outbox.relay()
        return len(told(receiver, order["id"], "order.closed")) >= 1

    await wait_until(closed_told, timeout=30)
    await asyncio.sleep(0.5)
    [note] = told(receiver, order["id"], "order.closed")
    assert note["out_order_no"] and note["amount_fen"] == 800 and note["reason"] == "expired"
    assert receiver.forged == 0
    assert len(await _audited("openplatform.cashier_order_closed", c.col.id)) == 1

    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert got["status"] == "closed" and got["closed_at"] is not None
    # The resident cannot pay it any more: problem+json, audited, no payment opened.
    r = await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "openplatform.cashier_order_closed" and "重新下单" in r.json()["title"]
    refusals = await _audited("openplatform.cashier_refused", c.col.id)
    assert [e.data["order_id"] for e in refusals if e.data["reason"] == "order_closed"] == [order["id"]]
    # A refund of it is refused too; the order that is not yet due is untouched.
    r = await _call(
        http,
        c,
        "POST",
        f"{ORDERS}/{order['id']}/refunds",
        {"out_refund_no": "RX" + order["id"][:10], "amount_fen": 1},
    )
    assert r.status_code == 409 and r.json()["code"] == "openplatform.cashier_order_not_paid"
    assert (await _call(http, c, "GET", f"{ORDERS}/{other['id']}")).json()["status"] == "created"
    assert await notices(other["id"]) == 0


async def test_a_payment_after_the_deadline_is_refunded_and_the_column_told_closed(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    order = (await _call(http, c, "POST", ORDERS, _order(sub, 650))).json()
    # The wallet page opened in time, paid after the deadline.
    started = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "alipay"})
    ).json()
    assert "out_trade_no" in started, started
    await expire(order["id"])
    await pay_at_provider(pay_sandbox, "alipay", started["out_trade_no"], started["client_params"])

    async def refunded() -> bool:
        async with httpx.AsyncClient(base_url=pay_sandbox["alipay"], timeout=30) as sb:
            got = (await sb.get(f"/_sandbox/orders/{started['out_trade_no']}")).json()
        return len(got.get("refunds") or []) == 1

    await wait_until(refunded, timeout=30)
    assert len(await _audited("openplatform.cashier_late_payment", c.col.id)) == 1
    await cashier_sweep.close_expired()

    async def closed_told() -> bool:
        return len(told(receiver, order["id"], "order.closed")) >= 1

    await wait_until(closed_told, timeout=30)
    await asyncio.sleep(0.5)
    assert told(receiver, order["id"], "order.paid") == []
    got = (await _call(http, c, "GET", f"{ORDERS}/{order['id']}")).json()
    assert got["status"] == "closed" and got["paid_at"] is None and got["refunded_fen"] == 0


async def test_a_finished_refund_is_told_to_the_column_once(
    client: httpx.AsyncClient,
    http: httpx.AsyncClient,
    login: LoginFn,
    receiver: Receiver,
    pay_sandbox: dict[str, str],
) -> None:
    admin = await login(roles=["admin"])
    c = await _cashier(client, admin, receiver)
    resident = await login()
    sub = await _subject(client, resident, c.col)
    order = (await _call(http, c, "POST", ORDERS, _order(sub, 1000))).json()
    started = (
        await client.post(f"{order['pay_path']}/pay", headers=resident, json={"provider": "wechat_v2"})
    ).json()
    await pay_at_provider(pay_sandbox, "wechat_v2", started["out_trade_no"], started["client_params"])

    async def paid_told() -> bool:
        return len(told(receiver, order["id"], "order.paid")) == 1

    await wait_until(paid_told, timeout=30)
    refund = {"out_refund_no": "RN" + order["id"][:10], "amount_fen": 300, "reason": "多缴退回"}
    r = await _call(http, c, "POST", f"{ORDERS}/{order['id']}/refunds", refund)
    assert r.status_code == 201, r.text
    refund_id = r.json()["id"]

    await _refunds_reach(http, c, order["id"], "succeeded")
    # Two sweeps at once and a third later: one notice.
    await asyncio.gather(cashier_sweep.notify_refunds(), cashier_sweep.notify_refunds())
    await cashier_sweep.notify_refunds()
    assert await notices(order["id"], cashier_sweep.refund_event(refund_id)) == 1

    async def refund_told() -> bool:
        return len(told(receiver, order["id"], "refund.succeeded")) >= 1

    await wait_until(refund_told, timeout=30)
    await asyncio.sleep(0.5)
    [note] = told(receiver, order["id"], "refund.succeeded")
    assert note["refund_id"] == refund_id and note["out_refund_no"] == refund["out_refund_no"]
    assert note["amount_fen"] == 300 and note["order_refunded_fen"] == 300
    async with session_scope() as s:
        row = await s.get(CashierRefund, refund_id)
        assert row is not None and row.settled_status == "succeeded" and row.settled_at is not None
    assert len(await _audited("openplatform.cashier_refund_settled", c.col.id)) == 1
