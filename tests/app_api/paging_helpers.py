"""Shared by the list tests: walking a list page by page with its cursor, as a client would, and
the bounds every list's query parameters must hold (422, never a 500)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

# Rows made by the list tests are dated in the past, in this order; a row inserted while a client
# pages (dated now) is newer than every one of them.
BASE = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)


def schedule(n: int) -> list[dt.datetime]:
    """``n`` times, oldest first, one minute apart, except two in the middle that are equal (the
    id then orders them)."""
    times = [BASE + dt.timedelta(minutes=i) for i in range(n)]
    times[n // 2] = times[n // 2 - 1]
    return times


def newest_first(rows: Sequence[tuple[dt.datetime, str]]) -> list[str]:
    """The ids of ``(time, id)`` rows in the order the lists promise: newest first, then by id."""
    return [row_id for _, row_id in sorted(rows, reverse=True)]


def raw_cursor(at: str, row_id: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps([at, row_id]).encode()).decode().rstrip("=")


async def walk(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None,
    *,
    limit: int,
    item_id: Callable[[dict[str, Any]], str],
    key: str | None = "items",
    params: dict[str, Any] | None = None,
    between: Callable[[], Awaitable[Any]] | None = None,
) -> tuple[list[str], int]:
    """Every row's id in the order the pages give them, and the number of pages.

    ``key=None``: the body is a plain list and the next cursor comes in ``X-Next-Cursor``.
    ``between`` runs after the first page (a row arriving while the client pages).
    """
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        q = {**(params or {}), "limit": limit}
        if cursor:
            q["cursor"] = cursor
        r = await client.get(url, params=q, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        items = body if key is None else body[key]
        cursor = r.headers.get("x-next-cursor") if key is None else body["next_cursor"]
        assert len(items) <= limit
        if cursor:
            assert len(items) == limit, "a page before the last is full"
        seen.extend(item_id(i) for i in items)
        pages += 1
        if pages == 1 and between is not None:
            await between()
        if not cursor:
            return seen, pages
        assert pages < 1000, "the cursor does not move"


def check_walk(seen: list[str], expected: list[str], *, late: str | None = None, exact: bool = True) -> None:
    """Each row once, in order; the row that arrived while paging is not slipped in (nothing shifts).

    ``exact=False`` for lists other tests also write to: our rows in order among theirs.
    """
    assert len(seen) == len(set(seen)), "a row was seen twice"
    if exact:
        assert seen == expected
    else:
        mine = set(expected)
        assert [i for i in seen if i in mine] == expected
    if late is not None:
        assert late not in seen


async def check_bounds(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str] | None,
    *,
    params: dict[str, Any] | None = None,
    offset: bool = False,
) -> None:
    """Limits outside 1..100, huge or negative offsets and malformed cursors are 422, never a 500."""
    huge = "99999999999999999999"
    bad: list[dict[str, Any]] = [{"limit": 0}, {"limit": 101}, {"limit": huge}, {"limit": "-" + huge}]
    if offset:
        bad += [{"offset": huge}, {"offset": 10_001}, {"offset": -1}]
    bad.append({"cursor": "a!b"})  # not base64url at all
    for q in bad:
        r = await client.get(url, params={**(params or {}), **q}, headers=headers)
        assert r.status_code == 422, (q, r.status_code, r.text)
    cursors = [
        "bm90LWpzb24",  # base64url of "not-json"
        "A" * 200,
        raw_cursor("2026-01-01T08:00:00", "abc"),  # no time zone
        raw_cursor("0001-01-01T00:00:00+14:00", "abc"),  # not a time in UTC
        raw_cursor("2026-01-01T08:00:00+00:00", "a\x00b"),  # NUL in the id
        raw_cursor("2026-01-01T08:00:00+00:00", 12),
        base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode().rstrip("="),
    ]
    for c in cursors:
        r = await client.get(url, params={**(params or {}), "cursor": c}, headers=headers)
        assert r.status_code == 422, (c, r.status_code, r.text)
        assert r.json()["code"] == "app.bad_cursor", r.text
