from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel import col, select

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount
from app_api.platform.datahub.models import DataAccessLog

router = APIRouter(tags=["datahub"])


@router.get("/me/data-access")
async def my_data_access(principal: CurrentAccount, session: SessionDep, limit: int = 50) -> dict[str, Any]:
    """Who read this resident's records at the city data center, for what, on which consent."""
    rows = (
        await session.exec(
            select(DataAccessLog)
            .where(DataAccessLog.subject_account_id == principal.id)
            .order_by(col(DataAccessLog.at).desc())
            .limit(min(max(limit, 1), 200))
        )
    ).all()
    return {
        "items": [
            {
                "at": r.at,
                "record_type": r.record_type,
                "purpose": r.purpose,
                "consent_id": r.consent_id,
                "fields": r.fields,
                "by_self": r.accessor_id == principal.id,
                "found": r.found,
            }
            for r in rows
        ]
    }
