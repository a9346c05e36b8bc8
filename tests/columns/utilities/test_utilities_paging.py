"""Payment history and the biller-notice list page by cursor: every row once, newest first, also
while new payments arrive; bounded parameters (a huge offset was a 500 on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import secrets

import httpx

from app_api.core.db import session_scope, utcnow
from columns.utilities.models import Bill, BillerNotice, Binding, Payment, PaymentItem
from tests.app_api.paging_helpers import check_bounds, check_walk, newest_first, schedule, walk
from tests.conftest import LoginFn

API = "/api/v1/columns/utilities"


async def _paid(account_id: str, paid_at: dt.datetime) -> str:
    async with session_scope() as s:
        p = Payment(
            account_id=account_id,
            provider="wechat_v3",
            amount_fen=1234,
            status="paid",
            out_trade_no=secrets.token_hex(8),
            created_at=paid_at - dt.timedelta(minutes=1),
            paid_at=paid_at,
        )
        s.add(p)
    return p.id


async def _notice(account_id: str, created_at: dt.datetime) -> str:
    """A paid bill's notice to its biller, with the payment, item, bill and binding it belongs to."""
    async with session_scope() as s:
        b = Binding(
            account_id=account_id,
            biller_code="water",
            kind="water",
            account_no=secrets.token_hex(6),
            holder_name_enc=b"x",
            holder_masked="张*",
        )
        bill = Bill(
            biller_code="water",
            account_no=b.account_no,
            bill_no=secrets.token_hex(8),
            period="2026-01",
            amount_fen=500,
            due_date=dt.date(2026, 2, 1),
            status="paid",
        )
        p = Payment(
            account_id=account_id, provider="wechat_v3", amount_fen=500, status="paid", paid_at=created_at
        )
        s.add_all([b, bill, p])
        await s.flush()
        item = PaymentItem(
            payment_id=p.id, bill_id=bill.id, binding_id=b.id, amount_fen=500, outcome="applied"
        )
        s.add(item)
        await s.flush()
        n = BillerNotice(
            item_id=item.id,
            biller_code="water",
            account_no=b.account_no,
            bill_no=bill.bill_no,
            amount_fen=500,
            paid_at=created_at,
            channel="wechat_v3",
            status="dead",
            next_attempt_at=created_at,
            created_at=created_at,
        )
        s.add(n)
    return n.id


async def test_payment_history_pages_by_cursor_while_a_payment_arrives(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    h = await login()
    me = (await client.get("/api/v1/me", headers=h)).json()["id"]
    times = schedule(7)
    expected = newest_first([(at, await _paid(me, at)) for at in times])
    late: list[str] = []

    async def arrives() -> None:
        late.append(await _paid(me, utcnow()))

    seen, pages = await walk(
        client, f"{API}/payments", h, limit=3, item_id=lambda i: i["id"], between=arrives
    )
    assert pages == 3
    check_walk(seen, expected, late=late[0])
    # The first page again starts with the new payment; ``total`` counts every paid payment.
    first = (await client.get(f"{API}/payments", params={"limit": 3}, headers=h)).json()
    assert first["items"][0]["id"] == late[0] and first["total"] == 8

    # The deprecated offset still pages the same order; next to a cursor it is ignored.
    by_offset = (await client.get(f"{API}/payments", params={"limit": 2, "offset": 3}, headers=h)).json()
    assert [i["id"] for i in by_offset["items"]] == ([late[0], *expected])[3:5]
    assert by_offset["next_cursor"]
    cursor = first["next_cursor"]
    both = await client.get(f"{API}/payments", params={"limit": 3, "cursor": cursor, "offset": 5}, headers=h)
    alone = await client.get(f"{API}/payments", params={"limit": 3, "cursor": cursor}, headers=h)
    assert (
        both.json()["items"] == alone.json()["items"]
        and [i["id"] for i in alone.json()["items"]] == expected[2:5]
    )


async def test_payment_history_bounds(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login()
    await check_bounds(client, f"{API}/payments", h, offset=True)
    r = await client.get(f"{API}/payments", params={"offset": 10_000}, headers=h)
    assert r.status_code == 200 and r.json()["items"] == [] and r.json()["next_cursor"] is None


async def test_dead_letter_list_pages_by_cursor(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    owner = (await client.get("/api/v1/me", headers=await login())).json()["id"]
    expected = newest_first([(at, await _notice(owner, at)) for at in schedule(5)])
    late: list[str] = []

    async def arrives() -> None:
        late.append(await _notice(owner, utcnow()))

    seen, _ = await walk(
        client,
        f"{API}/admin/notices",
        admin,
        limit=2,
        params={"status": "dead"},
        item_id=lambda i: i["id"],
        between=arrives,
    )
    # Other tests' dead notices may be in the list too: ours appear once each, in order.
    check_walk(seen, expected, late=late[0], exact=False)
    await check_bounds(client, f"{API}/admin/notices", admin, offset=True)
