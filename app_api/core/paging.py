"""Paging: bounded limits, and keyset (cursor) paging for lists that grow.

Offset paging of a growing list skips or repeats rows when new ones arrive between pages, and a large
offset makes the database walk every skipped row. Lists that grow (orders, payments, applications,
inboxes, the audit log) page by a cursor instead: the last row's sort key, newest first. The cursor is
opaque to clients (base64url of the key); a malformed one is a 422, never a 500.

A route declares ``cursor: CursorQuery = None`` and ``limit: LimitQuery = 20``, asks the service for
``limit + 1`` rows after the cursor (:func:`after`), and answers ``{"items": ..., "next_cursor": ...}``
from :func:`page`. ``OffsetQuery`` bounds the offsets that older list routes still accept.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Query

from app_api.core.errors import ValidationFailed

T = TypeVar("T")

MAX_LIMIT = 100
MAX_OFFSET = 10_000

CursorQuery = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$", description="上一页返回的 next_cursor"),
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
# The offset older list routes still accept next to ``cursor``: bounded, marked deprecated in the schema,
# and ignored when a cursor is given (the cursor already says where the page starts).
LegacyOffsetQuery = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_OFFSET,
        deprecated=True,
        description="已弃用，请改用 cursor 分页；同时给出 cursor 时忽略 offset",
    ),
]


class BadCursor(ValidationFailed):
    code = "app.bad_cursor"
    title = "分页参数无效，请从第一页重新查询"


def encode_cursor(at: dt.datetime, row_id: str) -> str:
    raw = json.dumps([at.isoformat(), row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_text, row_id = json.loads(raw)
        at = dt.datetime.fromisoformat(at_text)
        # Control characters (NUL) would reach the database (a 500 on PostgreSQL); a time at the edge
        # of the calendar with an offset cannot be turned into UTC (OverflowError when bound).
        if not isinstance(row_id, str) or at.tzinfo is None or not row_id.isprintable():
            raise ValueError("bad cursor")
        at = at.astimezone(dt.UTC)
    except (ValueError, TypeError, UnicodeDecodeError, OverflowError):
        raise BadCursor(
            errors=[{"loc": ["query", "cursor"], "type": "cursor", "msg": "无效的分页游标"}]
        ) from None
    return at, row_id


def after(stmt: Any, *, at_column: Any, id_column: Any, cursor: str | None, limit: int) -> Any:
    """``stmt`` ordered newest first, limited to ``limit + 1`` rows after ``cursor``."""
    if cursor:
        at, row_id = decode_cursor(cursor)
        stmt = stmt.where(sa.or_(at_column < at, sa.and_(at_column == at, id_column < row_id)))
    return stmt.order_by(at_column.desc(), id_column.desc()).limit(limit + 1)


def page(
    rows: Sequence[T], *, limit: int, key: Callable[[T], tuple[dt.datetime, str]]
) -> tuple[list[T], str | None]:
    """The page's items and the cursor of the next page (None on the last page)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    at, row_id = key(items[-1])
    return items, encode_cursor(at, row_id)
