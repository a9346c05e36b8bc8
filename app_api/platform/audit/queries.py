"""Reading the audit log for administrators."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.audit.models import AuditEvent
from app_api.platform.audit.schemas import AuditEntryOut


async def entries(
    session: AsyncSession,
    *,
    action: str | None = None,
    subject_id: str | None = None,
    before_seq: int | None = None,
    limit: int = 100,
) -> list[AuditEntryOut]:
    """Entries newest first, optionally of one action or subject, before a sequence number."""
    q = select(AuditEvent)
    if action:
        q = q.where(AuditEvent.action == action)
    if subject_id:
        q = q.where(AuditEvent.subject_id == subject_id)
    if before_seq:
        q = q.where(col(AuditEvent.seq) < before_seq)
    rows = (await session.exec(q.order_by(col(AuditEvent.seq).desc()).limit(min(max(limit, 1), 500)))).all()
    return [AuditEntryOut.model_validate(r.model_dump()) for r in rows]
