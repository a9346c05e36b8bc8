"""Reading the audit log for administrators."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.platform.audit.models import AuditEvent
from app_api.platform.audit.schemas import AuditEntries, AuditEntryOut

# Sequence numbers are BIGINT: a larger ``before_seq`` could only overflow the database's integer.
MAX_SEQ = 2**63 - 1


async def entries(
    session: AsyncSession,
    *,
    action: str | None = None,
    subject_id: str | None = None,
    before_seq: int | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> AuditEntries:
    """Entries newest first, optionally of one action or subject, after ``cursor`` (and before a
    sequence number), with the next page's cursor.

    The chain's sequence number orders the log (it only grows), so the cursor's key is the last
    entry's ``seq``; its time is carried only because :mod:`app_api.core.paging` cursors have one.
    """
    q = select(AuditEvent)
    if action:
        q = q.where(AuditEvent.action == action)
    if subject_id:
        q = q.where(AuditEvent.subject_id == subject_id)
    if before_seq:
        q = q.where(col(AuditEvent.seq) < before_seq)
    if cursor:
        q = q.where(col(AuditEvent.seq) < _cursor_seq(cursor))
    rows = (await session.exec(q.order_by(col(AuditEvent.seq).desc()).limit(limit + 1))).all()
    items, next_cursor = paging.page(rows, limit=limit, key=_key)
    return AuditEntries(
        items=[AuditEntryOut.model_validate(r.model_dump()) for r in items], next_cursor=next_cursor
    )


def _key(e: AuditEvent) -> tuple[dt.datetime, str]:
    return e.at, str(e.seq)


def _cursor_seq(cursor: str) -> int:
    _, seq = paging.decode_cursor(cursor)
    if not seq.isdigit() or not 0 < int(seq) <= MAX_SEQ:
        raise paging.BadCursor(
            errors=[{"loc": ["query", "cursor"], "type": "cursor", "msg": "无效的分页游标"}]
        )
    return int(seq)
