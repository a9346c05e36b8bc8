from __future__ import annotations

from fastapi import APIRouter

from app_api.core.db import SessionDep
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
    before_seq: int | None = None,
    limit: int = 100,
) -> AuditEntries:
    """Audit entries, newest first."""
    return AuditEntries(
        items=await queries.entries(
            session, action=action, subject_id=subject_id, before_seq=before_seq, limit=limit
        )
    )


@router.get("/admin/audit/verify")
async def verify(_: Admin, session: SessionDep) -> ChainCheck:
    """Check the whole hash chain and name the first broken entry."""
    rep = await verify_chain(session)
    return ChainCheck(
        ok=rep.ok, checked=rep.checked, first_broken_seq=rep.first_broken_seq, reason=rep.reason
    )
