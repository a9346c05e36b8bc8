"""Order lists page by cursor; every number a client sends is bounded (issue 14)."""

from __future__ import annotations

import secrets

import pytest

from app_api.core.db import session_scope
from payments.orders import create_order

HUGE = "99999999999999999999"


async def open_orders(account_id: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        async with session_scope() as s:
            order = await create_order(
                s,
                account_id=account_id,
                purpose="testcol.bill",
                purpose_ref="P" + secrets.token_hex(6),
                amount_fen=1200,
                description="水费",
                provider="wechat_v2",
                channel="miniprogram",
            )
            ids.append(order.id)
    return ids


async def test_my_orders_page_by_cursor(ledger, client, login):
    headers = await login()
    me = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    opened = await open_orders(me, 5)
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/v1/payments/orders", headers=headers, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 2
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(opened) and len(seen) == len(set(seen))  # each once, none skipped
    created = [
        o["created_at"]
        for o in (await client.get("/api/v1/payments/orders", headers=headers)).json()["items"]
    ]
    assert created == sorted(created, reverse=True)  # newest first
    # The deprecated offset still works, bounded.
    r = await client.get("/api/v1/payments/orders", headers=headers, params={"offset": 4, "limit": 10})
    assert r.status_code == 200 and len(r.json()["items"]) == 1


async def test_finance_orders_page_by_cursor(ledger, client, login):
    headers, finance = await login(), await login(roles=["finance"])
    me = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    await open_orders(me, 3)
    first = await client.get("/api/v1/payments/finance/orders", headers=finance, params={"limit": 2})
    assert first.status_code == 200 and len(first.json()["items"]) == 2
    cursor = first.json()["next_cursor"]
    assert cursor
    second = await client.get(
        "/api/v1/payments/finance/orders", headers=finance, params={"limit": 2, "cursor": cursor}
    )
    assert second.status_code == 200
    assert not {o["id"] for o in first.json()["items"]} & {o["id"] for o in second.json()["items"]}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/payments/orders", {"offset": HUGE}),
        ("/api/v1/payments/orders", {"limit": HUGE}),
        ("/api/v1/payments/orders", {"limit": 0}),
        ("/api/v1/payments/orders", {"cursor": "bm90LWEtY3Vyc29y"}),
        ("/api/v1/payments/finance/orders", {"offset": HUGE}),
        ("/api/v1/payments/finance/orders", {"limit": 501}),
        ("/api/v1/payments/finance/orders", {"cursor": "%%%"}),
        ("/api/v1/payments/finance/reconciliation/runs", {"limit": HUGE}),
    ],
)
async def test_out_of_range_paging_is_422(ledger, client, login, path, params):
    headers = await login(roles=["finance"])
    r = await client.get(path, headers=headers, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_run_items_offset_bounded(ledger, client, login):
    finance = await login(roles=["finance"])
    r = await client.get(
        "/api/v1/payments/finance/reconciliation/runs/none/items", headers=finance, params={"offset": HUGE}
    )
    assert r.status_code == 422, r.text
