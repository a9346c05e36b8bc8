from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from app_api.core.db import SessionDep
from app_api.platform.access import Admin
from app_api.platform.audit.models import AuditEvent
from app_api.platform.audit.service import verify_chain

router = APIRouter(tags=["admin"])


@router.get("/admin/audit")
async def list_audit(
    _: Admin,
    session: SessionDep,
    action: str | None = None,
    subject_id: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """Audit entries, newest first."""
    q = select(AuditEvent)
    if action:
        q = q.where(AuditEvent.action == action)
    if subject_id:
        q = q.where(AuditEvent.subject_id == subject_id)
    if before_seq:
        q = q.where(col(AuditEvent.seq) < before_seq)
    rows = (await session.exec(q.order_by(col(AuditEvent.seq).desc()).limit(min(max(limit, 1), 500)))).all()
    return {"items": [r.model_dump() for r in rows]}


@router.get("/admin/audit/verify")
async def verify(_: Admin, session: SessionDep) -> dict[str, Any]:
    """Check the whole hash chain and name the first broken entry."""
    rep = await verify_chain(session)
    return {
        "ok": rep.ok,
        "checked": rep.checked,
        "first_broken_seq": rep.first_broken_seq,
        "reason": rep.reason,
    }
