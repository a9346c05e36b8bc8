from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging, write_batch
from app_api.core.db import built, model_row, utcnow
from app_api.core.errors import AppError, NotFound
from app_api.platform import audit
from app_api.platform.consent.models import Consent


class ConsentRequired(AppError):
    code = "consent.required"
    title = "需要您的授权同意"
    status = 403


async def grant(
    session: AsyncSession,
    *,
    account_id: str,
    purpose: str,
    scopes: list[str],
    text: str = "",
    grantee: str | None = None,
    granted_via: str = "self",
    ttl: dt.timedelta | None = None,
    actor_id: str | None = None,
    flush: bool = True,
) -> Consent:
    """Record a consent (and its audit entry). ``flush=False`` leaves the row to the caller's next
    flush, so several consents given on one screen are written in one INSERT."""
    given = {
        "account_id": account_id,
        "purpose": purpose,
        "scopes": sorted(set(scopes)),
        "text": text,
        "grantee": grantee,
        "granted_via": granted_via,
        "expires_at": utcnow() + ttl if ttl else None,
    }
    # Built without the constructor's per-field instrumentation: a one-tap application grants one
    # per record group.
    c = built(Consent, model_row(Consent, given), given)
    # Queued for the commit when the unit of work defers its writes (``require`` finds it meanwhile).
    if not write_batch.add(session, c) and flush:
        await session.flush()
    await audit.record(
        session,
        action="consent.granted",
        actor_id=actor_id or account_id,
        subject_type="consent",
        subject_id=c.id,
        data={"purpose": purpose, "scopes": c.scopes, "grantee": grantee, "via": granted_via},
    )
    return c


async def withdraw(session: AsyncSession, *, account_id: str, consent_id: str) -> Consent:
    c = await session.get(Consent, consent_id)
    if c is None or c.account_id != account_id:
        raise NotFound("未找到该授权记录")
    if c.withdrawn_at is None:
        c.withdrawn_at = utcnow()
        session.add(c)
        await session.flush()
        await audit.record(
            session,
            action="consent.withdrawn",
            actor_id=account_id,
            subject_type="consent",
            subject_id=c.id,
            data={"purpose": c.purpose},
        )
    return c


def is_valid(c: Consent, *, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    return c.withdrawn_at is None and (c.expires_at is None or c.expires_at > now)


async def require(
    session: AsyncSession,
    *,
    consent_id: str | None,
    account_id: str,
    purpose: str,
    scopes: list[str] | None = None,
    grantee: str | None = None,
) -> Consent:
    """The consent must exist, belong to this resident, be live, and cover the purpose and scopes."""
    c = write_batch.held(session, Consent, consent_id) if consent_id else None
    if c is None and consent_id:
        c = await session.get(Consent, consent_id)
    if c is None or c.account_id != account_id or not is_valid(c):
        raise ConsentRequired("未找到有效的授权，请先同意授权", purpose=purpose)
    if c.purpose != purpose or (grantee is not None and c.grantee not in (None, grantee)):
        raise ConsentRequired("授权用途不符", purpose=purpose)
    missing = sorted(set(scopes or []) - set(c.scopes))
    if missing:
        raise ConsentRequired("授权范围不包含所需信息", missing_scopes=missing)
    return c


async def list_for(session: AsyncSession, account_id: str) -> list[Consent]:
    return list(
        (
            await session.exec(
                select(Consent)
                .where(Consent.account_id == account_id)
                .order_by(col(Consent.granted_at).desc())
            )
        ).all()
    )


async def page_for(
    session: AsyncSession, account_id: str, *, cursor: str | None, limit: int
) -> tuple[list[Consent], str | None]:
    """The resident's consents newest first, after ``cursor``, and the next page's cursor."""
    q = paging.after(
        select(Consent).where(Consent.account_id == account_id),
        at_column=col(Consent.granted_at),
        id_column=col(Consent.id),
        cursor=cursor,
        limit=limit,
    )
    return paging.page((await session.exec(q)).all(), limit=limit, key=lambda c: (c.granted_at, c.id))
