"""The public notice list pages by cursor: pinned first, newest first, every notice once even when
one is published while a resident pages; bounded parameters (a huge offset was a 500 on PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import secrets

import httpx

from app_api.core.db import session_scope, utcnow
from columns.notices.models import Notice
from tests.app_api.paging_helpers import check_bounds, check_walk, raw_cursor, schedule, walk

API = "/api/v1/columns/notices/notices"


async def _publish(kind: str, at: dt.datetime, *, pinned: bool = False) -> str:
    async with session_scope() as s:
        n = Notice(
            title="停水通知",
            body="明日停水",
            department="自来水公司",
            kind=kind,
            pinned=pinned,
            published_at=at,
        )
        s.add(n)
    return n.id


async def test_notices_page_pinned_first_while_notices_are_published(client: httpx.AsyncClient) -> None:
    kind = "测试" + secrets.token_hex(4)  # only this test's notices
    times = schedule(6)
    rows = [
        (bool(i in (1, 4)), at, await _publish(kind, at, pinned=i in (1, 4))) for i, at in enumerate(times)
    ]
    order = [row_id for _, _, row_id in sorted(rows, reverse=True)]
    pinned, rest = order[:2], order[2:]
    late: dict[str, str] = {}

    async def published() -> None:
        late["pinned"] = await _publish(kind, utcnow(), pinned=True)  # above the page already read
        late["plain"] = await _publish(kind, utcnow())  # below it: the next page starts with it

    seen, pages = await walk(
        client, API, None, limit=2, params={"kind": kind}, item_id=lambda i: i["id"], between=published
    )
    check_walk(seen, [*pinned, late["plain"], *rest], late=late["pinned"])
    assert pages == 4

    first = (await client.get(API, params={"kind": kind, "limit": 2})).json()
    assert [i["id"] for i in first["items"]] == [late["pinned"], pinned[0]] and first["total"] == 8
    # The deprecated offset still pages the same order.
    by_offset = (await client.get(API, params={"kind": kind, "limit": 2, "offset": 2})).json()
    assert [i["id"] for i in by_offset["items"]] == [pinned[1], late["plain"]]


async def test_notice_list_bounds(client: httpx.AsyncClient) -> None:
    await check_bounds(client, API, None, offset=True)
    for bad in ("2." + "a" * 32, "a" * 32, "1."):  # the pinned flag is missing or wrong
        r = await client.get(API, params={"cursor": raw_cursor("2026-01-01T08:00:00+00:00", bad)})
        assert r.status_code == 422 and r.json()["code"] == "app.bad_cursor", r.text
