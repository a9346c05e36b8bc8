"""An agent's in-person attestation: the route to L3 without a face check."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import mask_id_number, mask_name
from app_api.platform import audit
from app_api.platform.accounts.principal import Principal
from app_api.platform.accounts.service import find_by_phone, raise_level
from app_api.platform.consent import service as consent_service
from app_api.platform.datahub import citizen_id
from app_api.platform.datahub.service import id_hash
from identity import errors
from identity.attempts import AttemptRecorded, add_attempt, normalize_name
from identity.models import IdentityAttempt
from identity.purposes import ATTESTATION_CONSENT_TEXT, ATTESTATION_PURPOSE


async def attest_in_person(
    session: AsyncSession,
    *,
    agent: Principal,
    resident_phone: str,
    id_number: str,
    name: str,
    document: str,
    resident_agreed: bool,
) -> IdentityAttempt:
    """An agent at a liaison station checked the resident's ID card in person: L3, recorded."""
    if not agent.station_id:
        raise errors.AgentStationRequired()
    if not resident_agreed:
        raise errors.ConsentNotGiven("请先让居民确认同意现场核验")
    number = id_number.strip().upper()
    reason = citizen_id.problem(number)
    if reason:
        raise errors.IdNumberInvalid(reason)
    resident = await find_by_phone(session, resident_phone)
    if resident is None:
        raise errors.ResidentNotFound()
    if resident.id == agent.id:
        raise errors.AttestationMismatch("代办员不能为自己核验")
    if resident.identity_level < 2 or not resident.id_number_hash:
        raise errors.ResidentNotRealName()
    if id_hash(number) != resident.id_number_hash or normalize_name(name) != (resident.real_name or ""):
        await add_attempt(
            session,
            account_id=resident.id,
            kind="agent_attestation",
            outcome="failed",
            code=errors.AttestationMismatch.code,
            actor_id=agent.id,
            station_id=agent.station_id,
            data={"document": document, "id_number": mask_id_number(number)},
        )
        await audit.record(
            session,
            action="identity.attestation_failed",
            actor_id=agent.id,
            subject_type="account",
            subject_id=resident.id,
            data={"station_id": agent.station_id, "id_number": mask_id_number(number)},
        )
        raise AttemptRecorded(errors.AttestationMismatch())
    consent = await consent_service.grant(
        session,
        account_id=resident.id,
        purpose=ATTESTATION_PURPOSE,
        scopes=["identity.in_person_check"],
        text=ATTESTATION_CONSENT_TEXT,
        grantee=agent.id,
        granted_via="agent",
        actor_id=agent.id,
    )
    attempt = await add_attempt(
        session,
        account_id=resident.id,
        kind="agent_attestation",
        outcome="passed",
        actor_id=agent.id,
        station_id=agent.station_id,
        data={"document": document, "consent_id": consent.id},
    )
    await audit.record(
        session,
        action="identity.attested_in_person",
        actor_id=agent.id,
        subject_type="account",
        subject_id=resident.id,
        data={"station_id": agent.station_id, "document": document, "name": mask_name(normalize_name(name))},
    )
    await raise_level(session, resident.id, 3, reason="agent_attestation", actor_id=agent.id)
    return attempt
