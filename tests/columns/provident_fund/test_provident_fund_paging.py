"""A resident's withdrawal applications page by cursor (the body stays a plain list; the next cursor
is in ``X-Next-Cursor``): every one once, newest first, also while one is added; bounded parameters."""

from __future__ import annotations

import datetime as dt

import httpx

from app_api.core.db import session_scope, utcnow
from columns.provident_fund.models import Withdrawal
from tests.app_api.paging_helpers import check_bounds, check_walk, newest_first, schedule, walk
from tests.conftest import LoginFn

API = "/api/v1/columns/provident_fund"


async def _withdrawal(account_id: str, at: dt.datetime) -> str:
    async with session_scope() as s:
        w = Withdrawal(
            account_id=account_id,
            fund_account_no="GJJ0001",
            reason="租房",
            amount_fen=100_000,
            bank_account_enc=b"",
            bank_account_masked="6222 **** 1234",
            status="approved",
            created_at=at,
        )
        s.add(w)
    return w.id


async def test_withdrawals_page_by_cursor(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login(level=2)  # the column asks for L2
    me = (await client.get("/api/v1/me", headers=h)).json()["id"]
    expected = newest_first([(at, await _withdrawal(me, at)) for at in schedule(5)])
    late: list[str] = []

    async def added() -> None:
        late.append(await _withdrawal(me, utcnow()))

    seen, pages = await walk(
        client, f"{API}/withdrawals", h, key=None, limit=2, item_id=lambda i: i["id"], between=added
    )
    check_walk(seen, expected, late=late[0])
    assert pages == 3
    r = await client.get(f"{API}/withdrawals", headers=h)
    assert [w["id"] for w in r.json()] == [late[0], *expected] and "x-next-cursor" not in r.headers
    await check_bounds(client, f"{API}/withdrawals", h)
