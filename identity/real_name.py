"""Real name (L2): the resident's name and citizen ID number against the population records."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str, mask_id_number
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.service import raise_level
from app_api.platform.consent import service as consent_service
from app_api.platform.datahub import citizen_id
from app_api.platform.datahub.service import RecordNotFound, get_datahub, id_hash
from identity import errors
from identity.attempts import AttemptRecorded, add_attempt, bump, day, normalize_name
from identity.config import get_identity_settings
from identity.purposes import REAL_NAME_CONSENT_TEXT, REAL_NAME_PURPOSE, REAL_NAME_SCOPES


async def verify_real_name(
    session: AsyncSession, *, account_id: str, name: str, id_number: str, agree: bool
) -> Account:
    """Match name and citizen ID number against the population records; raise the account to L2."""
    if not agree:
        raise errors.ConsentNotGiven()
    number = id_number.strip().upper()
    reason = citizen_id.problem(number)
    if reason:
        raise errors.IdNumberInvalid(reason)
    clean_name = normalize_name(name)
    account = await session.get(Account, account_id)
    if account is None:
        raise errors.ResidentNotFound()
    if account.id_number_hash:
        raise errors.RealNameAlreadyVerified(identity_level=account.identity_level)
    h = id_hash(number)
    other = (
        await session.exec(select(Account).where(Account.id_number_hash == h, Account.id != account_id))
    ).first()
    if other is not None:
        raise errors.IdNumberTaken()
    s = get_identity_settings()
    count, reset_in = await bump(f"identity:rn:{account_id}:{day()}")
    if count > s.real_name_attempts_per_day:
        raise errors.RealNameRateLimited(retry_after=reset_in)

    consent = await consent_service.grant(
        session,
        account_id=account_id,
        purpose=REAL_NAME_PURPOSE,
        scopes=REAL_NAME_SCOPES,
        text=REAL_NAME_CONSENT_TEXT,
    )
    try:
        rec = await get_datahub().person(
            session,
            id_number=number,
            accessor_id=account_id,
            purpose=REAL_NAME_PURPOSE,
            consent_id=consent.id,
            subject_account_id=account_id,
            scopes=REAL_NAME_SCOPES,
        )
    except RecordNotFound:
        rec = None
    if rec is None or normalize_name(rec.name) != clean_name:
        left = max(0, s.real_name_attempts_per_day - count)
        await add_attempt(
            session,
            account_id=account_id,
            kind="real_name",
            outcome="failed",
            code=errors.RealNameMismatch.code,
            data={"id_number": mask_id_number(number), "attempts_left": left},
        )
        await audit.record(
            session,
            action="identity.real_name_failed",
            actor_id=account_id,
            subject_type="account",
            subject_id=account_id,
            data={"id_number": mask_id_number(number), "attempts_left": left},
        )
        # One answer for "no such number" and "another name": the endpoint must not tell which
        # ID numbers exist.
        raise AttemptRecorded(errors.RealNameMismatch(attempts_left=left))

    account.real_name_enc = encrypt_str(clean_name, aad="name")
    account.id_number_enc = encrypt_str(number, aad="id_number")
    account.id_number_hash = h
    session.add(account)
    await session.flush()
    await add_attempt(
        session,
        account_id=account_id,
        kind="real_name",
        outcome="passed",
        data={"id_number": mask_id_number(number)},
    )
    await raise_level(session, account_id, 2, reason="real_name")
    return account
