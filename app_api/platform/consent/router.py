from __future__ import annotations

from fastapi import APIRouter

from app_api.core.db import SessionDep
from app_api.core.paging import MAX_LIMIT, CursorQuery, LimitQuery
from app_api.platform.access import CurrentAccount
from app_api.platform.consent import service
from app_api.platform.consent.models import Consent
from app_api.platform.consent.schemas import ConsentList, ConsentOut

router = APIRouter(tags=["consent"])


def _out(c: Consent) -> ConsentOut:
    return ConsentOut(
        id=c.id,
        purpose=c.purpose,
        scopes=c.scopes,
        grantee=c.grantee,
        granted_via=c.granted_via,
        text=c.text,
        granted_at=c.granted_at,
        expires_at=c.expires_at,
        withdrawn_at=c.withdrawn_at,
        active=service.is_valid(c),
    )


@router.get("/me/consents")
async def my_consents(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = MAX_LIMIT
) -> ConsentList:
    """The consents this resident has given, live and withdrawn, newest first; page on with ``cursor``."""
    rows, next_cursor = await service.page_for(session, principal.id, cursor=cursor, limit=limit)
    return ConsentList(consents=[_out(c) for c in rows], next_cursor=next_cursor)


@router.delete("/me/consents/{consent_id}")
async def withdraw(consent_id: str, principal: CurrentAccount, session: SessionDep) -> ConsentOut:
    """Withdraw a consent; data uses relying on it stop."""
    return _out(await service.withdraw(session, account_id=principal.id, consent_id=consent_id))
