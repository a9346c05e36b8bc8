"""Loan applications page by cursor for the applicant (plain list, next cursor in ``X-Next-Cursor``)
and for the institution's officers (``items``, ``total``, ``next_cursor``): every application once,
newest first, also while a new one arrives; bounded parameters."""

from __future__ import annotations

import datetime as dt
import secrets

import httpx
from test_loans import institution, product

from app_api.core.db import session_scope, utcnow
from columns.loans.models import Application
from tests.app_api.paging_helpers import check_bounds, check_walk, newest_first, schedule, walk
from tests.conftest import LoginFn

API = "/api/v1/columns/loans"


async def _applied(account_id: str, product_id: str, institution_id: str, at: dt.datetime) -> str:
    async with session_scope() as s:
        a = Application(
            account_id=account_id,
            product_id=product_id,
            institution_id=institution_id,
            applicant_type="individual",
            amount_fen=20_000_000,
            term_months=36,
            purpose="购买家用轿车",
            consent_id=secrets.token_hex(16),
            shared_enc=b"",
            created_at=at,
            updated_at=at,
        )
        s.add(a)
    return a.id


async def test_applications_page_by_cursor_for_applicant_and_officer(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    inst, officer = await institution(client, login, "分页测试银行")
    prod = (await product(client, officer))["id"]
    resident = await login()
    me = (await client.get("/api/v1/me", headers=resident)).json()["id"]
    expected = newest_first([(at, await _applied(me, prod, inst, at)) for at in schedule(5)])
    late: list[str] = []

    async def arrives() -> None:
        late.append(await _applied(me, prod, inst, utcnow()))

    seen, pages = await walk(
        client, f"{API}/applications", resident, key=None, limit=2, item_id=lambda i: i["id"], between=arrives
    )
    check_walk(seen, expected, late=late[0])
    assert pages == 3
    # Without parameters the applicant gets every application, as before, and no next cursor.
    r = await client.get(f"{API}/applications", headers=resident)
    assert [i["id"] for i in r.json()] == [late[0], *expected] and "x-next-cursor" not in r.headers

    seen, pages = await walk(
        client, f"{API}/officer/applications", officer, limit=2, item_id=lambda i: i["id"], between=arrives
    )
    check_walk(seen, [late[0], *expected], late=late[1])
    page = (
        await client.get(f"{API}/officer/applications", params={"limit": 2, "offset": 2}, headers=officer)
    ).json()
    assert page["total"] == 7 and [i["id"] for i in page["items"]] == [late[0], *expected][1:3]


async def test_application_lists_bounds(client: httpx.AsyncClient, login: LoginFn) -> None:
    _, officer = await institution(client, login, "分页边界银行")
    await check_bounds(client, f"{API}/applications", await login())
    await check_bounds(client, f"{API}/officer/applications", officer, offset=True)
