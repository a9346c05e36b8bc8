"""Identity jobs (registered through the identity component)."""

from __future__ import annotations

from sqlmodel import col, select

from app_api.core.db import session_scope
from app_api.core.jobs import broker
from app_api.platform.consent import service as consent_service
from app_api.platform.consent.models import Consent
from identity.face_data import delete_face_data
from identity.models import IdentityFaceProfile


async def sweep_withdrawn_face_consents() -> int:
    """Delete face data whose consent was withdrawn (or expired) elsewhere, e.g. through the
    platform's own consent endpoint. Returns the number of profiles deleted."""
    deleted = 0
    async with session_scope() as session:
        rows = (
            await session.exec(
                select(IdentityFaceProfile.account_id, Consent).join(
                    Consent, col(Consent.id) == col(IdentityFaceProfile.consent_id), isouter=True
                )
            )
        ).all()
        for account_id, consent in rows:
            if consent is None or not consent_service.is_valid(consent):
                deleted += await delete_face_data(session, account_id=account_id, reason="consent_withdrawn")
    return deleted


@broker.task(task_name="identity.sweep_face_data", schedule=[{"cron": "*/10 * * * *"}])
async def sweep_face_data() -> int:
    return await sweep_withdrawn_face_consents()
