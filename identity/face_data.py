"""Face consent and the face data kept under it (the template and the ID photo), and its deletion."""

from __future__ import annotations

import hmac

from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_bytes, encrypt_bytes
from app_api.core.db import utcnow
from app_api.platform import audit
from app_api.platform.consent import service as consent_service
from app_api.platform.consent.models import Consent
from identity import errors
from identity.models import IdentityFaceProfile
from identity.purposes import FACE_CONSENT_TEXT, FACE_PURPOSE, FACE_SCOPES
from identity.schemas import FaceDataDeletedOut


async def active_face_consent(session: AsyncSession, account_id: str) -> Consent | None:
    for c in await consent_service.list_for(session, account_id):
        if c.purpose == FACE_PURPOSE and consent_service.is_valid(c):
            return c
    return None


async def grant_face_consent(session: AsyncSession, *, account_id: str, agree: bool) -> Consent:
    if not agree:
        raise errors.ConsentNotGiven()
    existing = await active_face_consent(session, account_id)
    if existing is not None:
        return existing
    return await consent_service.grant(
        session, account_id=account_id, purpose=FACE_PURPOSE, scopes=FACE_SCOPES, text=FACE_CONSENT_TEXT
    )


async def delete_face_data(session: AsyncSession, *, account_id: str, reason: str) -> bool:
    """Delete the stored template and ID photo (if any); audited. Returns whether anything was stored."""
    result = await session.exec(
        delete(IdentityFaceProfile).where(col(IdentityFaceProfile.account_id) == account_id)
    )
    deleted = bool(result.rowcount)
    await session.flush()
    if deleted:
        await audit.record(
            session,
            action="identity.face_data_deleted",
            actor_id=account_id,
            subject_type="account",
            subject_id=account_id,
            data={"reason": reason},
        )
    return deleted


async def withdraw_face_consent(session: AsyncSession, *, account_id: str) -> FaceDataDeletedOut:
    """Withdraw every live face consent and delete the face data that relied on it."""
    withdrawn = 0
    for c in await consent_service.list_for(session, account_id):
        if c.purpose == FACE_PURPOSE and c.withdrawn_at is None:
            await consent_service.withdraw(session, account_id=account_id, consent_id=c.id)
            withdrawn += 1
    deleted = await delete_face_data(session, account_id=account_id, reason="consent_withdrawn")
    return FaceDataDeletedOut(consents_withdrawn=withdrawn, face_data_deleted=deleted)


async def face_profile(session: AsyncSession, account_id: str) -> IdentityFaceProfile | None:
    """The stored face data, if its consent still stands.

    A consent can also be withdrawn through the platform's own consent endpoint, which does not
    know about face data: the data goes the first time it is looked at afterwards (and in the
    periodic sweep, ``identity.tasks``).
    """
    p = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == account_id))
    ).first()
    if p is None:
        return None
    c = await session.get(Consent, p.consent_id)
    if c is None or not consent_service.is_valid(c):
        await delete_face_data(session, account_id=account_id, reason="consent_withdrawn")
        return None
    return p


def stored_template(profile: IdentityFaceProfile) -> list[float] | None:
    """The profile's face template (the registry photo's encoding), decrypted (None when none is kept)."""
    if profile.template_enc is None:
        return None
    import numpy as np  # here, not at import: the api process should not load numpy until it is used

    blob = decrypt_bytes(profile.template_enc, aad=f"face_template:{profile.account_id}")
    return [float(x) for x in np.frombuffer(blob, dtype=np.float32)]


def registry_template(profile: IdentityFaceProfile | None, photo: bytes) -> list[float] | None:
    """The kept encoding of the registry photo ``photo``, or None when the kept one is of another
    photo (the registry's photo was replaced, e.g. a renewed ID card) or none is kept: the caller
    then encodes ``photo`` itself."""
    if profile is None or profile.template_enc is None or profile.id_photo_enc is None:
        return None
    kept = decrypt_bytes(profile.id_photo_enc, aad=f"id_photo:{profile.account_id}")
    if not hmac.compare_digest(kept, photo):
        return None
    return stored_template(profile)


async def store_face_data(
    session: AsyncSession,
    *,
    account_id: str,
    consent_id: str,
    verifier: str,
    template: list[float] | None,
    photo: bytes | None,
) -> None:
    """Keep the reference a passed face check used, encrypted and bound to the account: the registry
    photo and its encoding (``template``). A capture's encoding is never passed here."""
    p = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == account_id))
    ).first()
    if p is None:
        p = IdentityFaceProfile(account_id=account_id, consent_id=consent_id, verifier=verifier)
    p.consent_id = consent_id
    p.verifier = verifier
    if template is not None:
        import numpy as np

        blob = np.asarray(template, dtype=np.float32).tobytes()
        p.template_enc = encrypt_bytes(blob, aad=f"face_template:{account_id}")
    if photo is not None:
        p.id_photo_enc = encrypt_bytes(photo, aad=f"id_photo:{account_id}")
    p.updated_at = utcnow()
    session.add(p)
    await session.flush()
