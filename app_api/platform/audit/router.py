from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app_api.core.db import SessionDep
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import Admin
from app_api.platform.audit import queries
from app_api.platform.audit.schemas import AuditEntries, ChainCheck
from app_api.platform.audit.service import verify_chain

router = APIRouter(tags=["admin"])


@router.get("/admin/audit")
async def list_audit(
    _: Admin,
    session: SessionDep,
    action: str | None = None,
    subject_id: str | None = None,
    before_seq: Annotated[
        int | None,
        Query(ge=1, le=queries.MAX_SEQ, deprecated=True, description="已弃用，请改用 cursor 分页"),
    ] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> AuditEntries:
    """Audit entries, newest first; page on with ``cursor`` = the previous page's ``next_cursor``."""
    return await queries.entries(
        session, action=action, subject_id=subject_id, before_seq=before_seq, cursor=cursor, limit=limit
    )


@router.get("/admin/audit/verify")
async def verify(_: Admin, session: SessionDep) -> ChainCheck:
    """Check the whole hash chain and name the first broken entry."""
    rep = await verify_chain(session)
    return ChainCheck(
        ok=rep.ok, checked=rep.checked, first_broken_seq=rep.first_broken_seq, reason=rep.reason
    )
