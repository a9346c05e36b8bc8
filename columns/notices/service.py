from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.platform import audit
from columns.notices.errors import NoticeNotFound
from columns.notices.models import Notice
from columns.notices.schemas import NoticeCreate


async def list_notices(
    session: AsyncSession, *, kind: str | None, offset: int, limit: int
) -> tuple[list[Notice], int]:
    q = select(Notice).where(col(Notice.withdrawn_at).is_(None))
    if kind:
        q = q.where(Notice.kind == kind)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(
            q.order_by(col(Notice.pinned).desc(), col(Notice.published_at).desc()).offset(offset).limit(limit)
        )
    ).all()
    return list(rows), int(total)


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
