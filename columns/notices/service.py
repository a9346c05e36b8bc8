from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.db import utcnow
from app_api.platform import audit
from columns.notices.errors import NoticeNotFound
from columns.notices.models import Notice
from columns.notices.schemas import NoticeCreate


async def list_notices(
    session: AsyncSession, *, kind: str | None, cursor: str | None, offset: int, limit: int
) -> tuple[list[Notice], int, str | None]:
    """Published notices, pinned first, newest first, after ``cursor`` (or, deprecated, ``offset`` rows
    in); the total and the next page's cursor.

    The sort key is (pinned, published_at, id); the cursor carries the pinned flag in front of the id
    (``"1.<id>"`` or ``"0.<id>"``) since :func:`app_api.core.paging.after` knows two columns only.
    """
    q = select(Notice).where(col(Notice.withdrawn_at).is_(None))
    if kind:
        q = q.where(Notice.kind == kind)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    if cursor:
        q = q.where(_after(cursor))
    q = q.order_by(col(Notice.pinned).desc(), col(Notice.published_at).desc(), col(Notice.id).desc())
    rows = (await session.exec(q.offset(0 if cursor else offset).limit(limit + 1))).all()
    items, next_cursor = paging.page(
        rows, limit=limit, key=lambda n: (n.published_at, f"{int(n.pinned)}.{n.id}")
    )
    return items, int(total), next_cursor


def _after(cursor: str) -> sa.ColumnElement[bool]:
    at, key = paging.decode_cursor(cursor)
    flag, _, row_id = key.partition(".")
    if flag not in ("0", "1") or not row_id:
        raise paging.BadCursor(
            errors=[{"loc": ["query", "cursor"], "type": "cursor", "msg": "无效的分页游标"}]
        )
    pinned, at_col, id_col = col(Notice.pinned), col(Notice.published_at), col(Notice.id)
    later = sa.or_(at_col < at, sa.and_(at_col == at, id_col < row_id))
    if flag == "1":
        return sa.or_(pinned.is_(False), sa.and_(pinned.is_(True), later))
    return sa.and_(pinned.is_(False), later)


async def get_notice(session: AsyncSession, *, notice_id: str) -> Notice:
    n = await session.get(Notice, notice_id)
    if n is None or n.withdrawn_at is not None:
        raise NoticeNotFound()
    return n


async def publish(session: AsyncSession, *, data: NoticeCreate, actor_id: str) -> Notice:
    n = Notice(**data.model_dump(), created_by=actor_id)
    session.add(n)
    await session.flush()
    await audit.record(
        session,
        action="notices.published",
        actor_id=actor_id,
        subject_type="notice",
        subject_id=n.id,
        data={"title": n.title},
    )
    return n


async def withdraw(session: AsyncSession, *, notice_id: str, actor_id: str) -> Notice:
    n = await get_notice(session, notice_id=notice_id)
    n.withdrawn_at = utcnow()
    session.add(n)
    await session.flush()
    await audit.record(
        session, action="notices.withdrawn", actor_id=actor_id, subject_type="notice", subject_id=n.id
    )
    return n
