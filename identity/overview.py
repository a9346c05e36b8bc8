"""The resident's own view: level, identity consents, face-data status and verification history."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import mask_id_number, mask_name
from app_api.platform.accounts.models import Account
from app_api.platform.consent import service as consent_service
from identity import errors
from identity.challenges import face_lock_state
from identity.config import get_identity_settings
from identity.face_data import active_face_consent, face_profile
from identity.models import IdentityAttempt
from identity.schemas import FaceStatus, IdentityAttemptOut, IdentityConsentOut, IdentityOverview


async def overview(session: AsyncSession, *, account_id: str) -> IdentityOverview:
    account = await session.get(Account, account_id)
    if account is None:
        raise errors.ResidentNotFound()
    profile = await face_profile(session, account_id)
    consents = [
        c for c in await consent_service.list_for(session, account_id) if c.purpose.startswith("identity.")
    ]
    attempts = (
        await session.exec(
            select(IdentityAttempt)
            .where(IdentityAttempt.account_id == account_id)
            .order_by(col(IdentityAttempt.created_at).desc())
            .limit(50)
        )
    ).all()
    fails, reset_in = await face_lock_state(account_id)
    limit = get_identity_settings().face_failures_per_day
    return IdentityOverview(
        identity_level=account.identity_level,
        real_name=mask_name(account.real_name) if account.real_name else None,
        id_number=mask_id_number(account.id_number) if account.id_number else None,
        face=FaceStatus(
            consented=await active_face_consent(session, account_id) is not None,
            data_stored=profile is not None,
            stored_at=profile.updated_at if profile else None,
            failures_today=fails,
            failures_allowed_per_day=limit,
            locked=fails >= limit,
            locked_for_s=reset_in if fails >= limit else 0,
        ),
        consents=[
            IdentityConsentOut(
                id=c.id,
                purpose=c.purpose,
                scopes=c.scopes,
                text=c.text,
                granted_via=c.granted_via,
                granted_at=c.granted_at,
                withdrawn_at=c.withdrawn_at,
                active=consent_service.is_valid(c),
            )
            for c in consents
        ],
        history=[
            IdentityAttemptOut(
                id=a.id,
                kind=a.kind,
                purpose=a.purpose,
                outcome=a.outcome,
                code=a.code,
                verifier=a.verifier,
                station_id=a.station_id,
                at=a.created_at,
            )
            for a in attempts
        ],
    )
