from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app_api.core.db import SessionDep
from app_api.core.paging import CursorQuery, LegacyOffsetQuery, LimitQuery
from app_api.platform.access import Admin, public
from columns.notices import service
from columns.notices.config import get_config
from columns.notices.dependencies import PublishedNotice
from columns.notices.schemas import NoticeCreate, NoticePage, NoticePublic

router = APIRouter()


@router.get("/notices", dependencies=[Depends(public)])
async def list_notices(
    session: SessionDep,
    kind: Annotated[str | None, Query(max_length=20)] = None,
    cursor: CursorQuery = None,
    offset: LegacyOffsetQuery = 0,
    limit: LimitQuery = 20,
) -> NoticePage:
    """Published announcements, pinned first, newest first; page on with ``cursor``."""
    rows, total, next_cursor = await service.list_notices(
        session, kind=kind, cursor=cursor, offset=offset, limit=min(limit, get_config().page_size_max)
    )
    return NoticePage(
        items=[NoticePublic.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        next_cursor=next_cursor,
    )


@router.get("/notices/{notice_id}", dependencies=[Depends(public)])
async def get_notice(notice: PublishedNotice) -> NoticePublic:
    """One announcement."""
    return NoticePublic.model_validate(notice, from_attributes=True)


@router.post("/notices", status_code=201)
async def publish(body: NoticeCreate, admin: Admin, session: SessionDep) -> NoticePublic:
    """Publish an announcement (administrators)."""
    return NoticePublic.model_validate(
        await service.publish(session, data=body, actor_id=admin.id), from_attributes=True
    )


@router.delete("/notices/{notice_id}", status_code=204)
async def withdraw(notice_id: str, admin: Admin, session: SessionDep) -> None:
    """Withdraw an announcement (administrators)."""
    await service.withdraw(session, notice_id=notice_id, actor_id=admin.id)
