"""An agent's in-person checks: the route to L3 without a face check, and the step-up without a face."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import mask_id_number, mask_name
from app_api.core.db import new_id
from app_api.core.errors import AppError
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.accounts.service import find_by_phone, raise_level
from app_api.platform.agents.actions import record_action
from app_api.platform.agents.mandates import require_mandate
from app_api.platform.consent import service as consent_service
from app_api.platform.datahub import citizen_id
from app_api.platform.datahub.service import id_hash
from identity import errors
from identity.attempts import AttemptRecorded, add_attempt, normalize_name
from identity.models import IdentityAttempt
from identity.purposes import ATTESTATION_CONSENT_TEXT, ATTESTATION_PURPOSE
from identity.step_up import IN_PERSON_KIND, approve_in_person_request, load_in_person_request

# The mandate scope under which an agent may check a resident in person for a step-up: the one
# for applying on their behalf ("代为申请办理事项"). A mandate limited to named items covers a
# step-up only if it names the purpose itself.
STEP_UP_MANDATE_SCOPE = "apply"


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


async def _step_up_refused(
    session: AsyncSession,
    err: AppError,
    *,
    agent: Principal,
    resident: Account,
    purpose: str | None,
    outcome: str = "refused",
    **data: Any,
) -> AttemptRecorded:
    """Record a refused or failed in-person step-up (attempt row and audit line) for commit."""
    await add_attempt(
        session,
        account_id=resident.id,
        kind=IN_PERSON_KIND,
        purpose=purpose,
        outcome=outcome,
        code=err.code,
        actor_id=agent.id,
        station_id=agent.station_id,
        data=data,
    )
    await audit.record(
        session,
        action="identity.step_up_in_person_refused",
        actor_id=agent.id,
        subject_type="account",
        subject_id=resident.id,
        data={"code": err.code, "purpose": purpose, "station_id": agent.station_id, **data},
    )
    return AttemptRecorded(err)


async def attest_step_up(
    session: AsyncSession,
    *,
    agent: Principal,
    resident_phone: str,
    request_id: str,
    id_number: str,
    name: str,
    document: str,
    resident_agreed: bool,
) -> tuple[IdentityAttempt, str]:
    """An agent, holding the resident's mandate, checked the resident and their ID card in person
    for the resident's pending step-up request: the request is approved (the resident's phone then
    collects the step-up token). Returns the passed attempt and the mandate's id.

    Refusals that concern a resident (no or another resident's request, no valid mandate, an ID
    that does not match) are recorded on the resident's history and in the audit chain.
    """
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
    req = await load_in_person_request(request_id)
    if req is None:
        raise await _step_up_refused(
            session, errors.StepUpRequestExpired(), agent=agent, resident=resident, purpose=None
        )
    if req.account_id != resident.id:
        raise await _step_up_refused(
            session, errors.StepUpRequestMismatch(), agent=agent, resident=resident, purpose=req.purpose
        )
    purpose = req.purpose
    if resident.identity_level < 3 or not resident.id_number_hash:
        raise await _step_up_refused(
            session, errors.ResidentNotL3(), agent=agent, resident=resident, purpose=purpose
        )
    try:
        mandate, station = await require_mandate(
            session,
            agent=agent,
            resident_id=resident.id,
            scope=STEP_UP_MANDATE_SCOPE,
            item_code=purpose,
        )
    except AppError as e:
        raise await _step_up_refused(session, e, agent=agent, resident=resident, purpose=purpose) from None
    if id_hash(number) != resident.id_number_hash or normalize_name(name) != (resident.real_name or ""):
        raise await _step_up_refused(
            session,
            errors.AttestationMismatch(),
            agent=agent,
            resident=resident,
            purpose=purpose,
            outcome="failed",
            mandate_id=mandate.id,
            document=document,
            id_number=mask_id_number(number),
        )
    attempt_id = new_id()
    if not await approve_in_person_request(request_id, attempt_id):
        raise errors.StepUpRequestUsed()
    attempt = await add_attempt(
        session,
        id=attempt_id,
        account_id=resident.id,
        kind=IN_PERSON_KIND,
        purpose=purpose,
        outcome="passed",
        actor_id=agent.id,
        station_id=station.id,
        data={"document": document, "mandate_id": mandate.id},
    )
    # The agents' own record (app_agent_action, with the mandate used) and its audit line ...
    await record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident.id,
        mandate=mandate,
        action="identity_step_up",
        subject_id=attempt.id,
        data={"purpose": purpose, "document": document},
    )
    # ... and identity's: the state change that lets the resident's phone collect a step-up token.
    await audit.record(
        session,
        action="identity.step_up_in_person",
        actor_id=agent.id,
        subject_type="account",
        subject_id=resident.id,
        data={
            "purpose": purpose,
            "attempt_id": attempt.id,
            "mandate_id": mandate.id,
            "station_id": station.id,
            "document": document,
            "name": mask_name(normalize_name(name)),
        },
    )
    return attempt, mandate.id
