"""Stations (public directory, admin upkeep), agents' work, residents' view of their mandates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, UploadFile

from app_api.core.crypto import mask_phone
from app_api.core.db import SessionDep
from app_api.core.paging import MAX_LIMIT, CursorQuery, LimitQuery
from app_api.platform.access import Admin, CurrentAccount, public, require_roles
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents import actions, filing, mandates, resident_settings, submissions
from app_api.platform.agents import stations as directory
from app_api.platform.agents.models import SCOPES
from app_api.platform.agents.schemas import (
    ActionList,
    AgentAssigned,
    AgentIn,
    AgentMe,
    AgentsMandate,
    AgentsMandates,
    BatchIn,
    BatchOut,
    ElderlyModeIn,
    ElderlyModeOut,
    InPersonMandate,
    MandateCodeSent,
    MandateScope,
    MaterialUploaded,
    ResidentApplications,
    ResidentsMandate,
    ResidentsMandates,
    SmsConfirm,
    StationIn,
    StationList,
    StationOut,
    StationUpdate,
    SubmissionIn,
    SubmissionOut,
)

router = APIRouter(tags=["agents"])
Agent = Annotated[Principal, Depends(require_roles("agent"))]


@router.get("/stations", dependencies=[Depends(public)])
async def stations(session: SessionDep, city: str | None = None, kind: str | None = None) -> StationList:
    """Liaison stations and village agent points (代办点), by city."""
    found = await directory.list_stations(session, city=city, kind=kind)
    return StationList(stations=[directory.station_out(s) for s in found])


@router.get("/stations/{station_id}", dependencies=[Depends(public)])
async def station(station_id: str, session: SessionDep) -> StationOut:
    """One station: address, hours, contacts."""
    return directory.station_out(await directory.get_station(session, station_id))


@router.post("/admin/stations", status_code=201)
async def create_station(body: StationIn, admin: Admin, session: SessionDep) -> StationOut:
    """Open a station."""
    return directory.station_out(await directory.create_station(session, body, actor_id=admin.id))


@router.patch("/admin/stations/{station_id}")
async def update_station(
    station_id: str, body: StationUpdate, admin: Admin, session: SessionDep
) -> StationOut:
    """Change a station's details, or close it."""
    return directory.station_out(await directory.update_station(session, station_id, body, actor_id=admin.id))


@router.post("/admin/stations/{station_id}/agents", status_code=201)
async def assign_agent(station_id: str, body: AgentIn, admin: Admin, session: SessionDep) -> AgentAssigned:
    """Make an account an agent of this station (creating the account if needed)."""
    st = await directory.get_station(session, station_id)
    account = await directory.assign_agent(
        session, station=st, phone=body.phone, password=body.password, actor_id=admin.id
    )
    return AgentAssigned(id=account.id, phone=mask_phone(body.phone), roles=account.roles, station_id=st.id)


# -- agents ------------------------------------------------------------------------------------


@router.get("/agent/me")
async def agent_me(agent: Agent, session: SessionDep) -> AgentMe:
    """The agent's station and the scopes a mandate can grant."""
    st = await directory.agent_station(session, agent)
    return AgentMe(
        agent_id=agent.id,
        station=directory.station_out(st),
        scopes=SCOPES,
        filing_available=filing.catalogue() is not None,
    )


@router.post("/agent/mandates/sms-requests", status_code=202)
async def request_mandate(body: MandateScope, agent: Agent, session: SessionDep) -> MandateCodeSent:
    """Send the resident an SMS code naming the station, the scope and the period."""
    return await mandates.request_sms_mandate(
        session, agent=agent, phone=body.phone, scopes=body.scopes, items=body.items, days=body.days
    )


@router.post("/agent/mandates/sms-confirm", status_code=201)
async def confirm_mandate(body: SmsConfirm, agent: Agent, session: SessionDep) -> AgentsMandate:
    """Record the mandate with the code the resident read out from their own phone."""
    m = await mandates.confirm_sms_mandate(session, agent=agent, request_id=body.request_id, code=body.code)
    return await mandates.for_agent(session, m)


@router.post("/agent/mandates/in-person", status_code=201)
async def in_person_mandate(body: InPersonMandate, agent: Agent, session: SessionDep) -> AgentsMandate:
    """Record a mandate given in person, with the agent's attestation of the ID check."""
    m = await mandates.record_in_person_mandate(
        session,
        agent=agent,
        phone=body.phone,
        scopes=body.scopes,
        items=body.items,
        days=body.days,
        id_number=body.id_number,
        document=body.document,
        statement=body.statement,
    )
    return await mandates.for_agent(session, m)


@router.get("/agent/mandates")
async def agent_mandates(
    agent: Agent, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = MAX_LIMIT
) -> AgentsMandates:
    """Mandates this agent holds, live and ended, newest first; page on with ``cursor``."""
    rows, next_cursor = await mandates.mandates_of_agent(session, agent.id, cursor=cursor, limit=limit)
    return AgentsMandates(
        mandates=[await mandates.for_agent(session, m) for m in rows], next_cursor=next_cursor
    )


@router.delete("/agent/mandates/{mandate_id}")
async def end_mandate(mandate_id: str, agent: Agent, session: SessionDep) -> AgentsMandate:
    """End a mandate this agent holds (the resident is told)."""
    m = await mandates.withdraw_mandate(session, mandate_id=mandate_id, by=agent)
    return await mandates.for_agent(session, m)


@router.post("/agent/submissions")
async def submit(body: SubmissionIn, agent: Agent, session: SessionDep) -> SubmissionOut:
    """File one application for a resident; resending the same client key returns the first result."""
    await submissions.lock_for_writing(session, agent.id)
    return await submissions.submit(session, agent=agent, item=body)


@router.post("/agent/submissions/batch")
async def submit_batch(body: BatchIn, agent: Agent, session: SessionDep) -> BatchOut:
    """Submissions queued offline: filed one by one, each with its own result; safe to resend."""
    return await submissions.submit_batch(session, agent=agent, items=body.items)


@router.get("/agent/residents/{resident_id}/applications")
async def resident_applications(resident_id: str, agent: Agent, session: SessionDep) -> ResidentApplications:
    """Track a resident's applications (needs the "track" scope)."""
    await mandates.act_for(session, agent=agent, resident_id=resident_id, scope="track", action="tracked")
    return ResidentApplications(applications=await filing.applications_of(session, resident_id))


@router.post("/agent/residents/{resident_id}/applications/{application_id}/materials", status_code=201)
async def upload_material(
    resident_id: str,
    application_id: str,
    agent: Agent,
    session: SessionDep,
    material: Annotated[str, Form(min_length=1, max_length=100)],
    file: UploadFile,
) -> MaterialUploaded:
    """Upload a material for a resident's application (needs the "upload" scope)."""
    m, station = await mandates.require_mandate(session, agent=agent, resident_id=resident_id, scope="upload")
    data = await file.read()
    result = await filing.upload_on_behalf(
        session,
        resident_id=resident_id,
        agent_id=agent.id,
        station_id=station.id,
        mandate_id=m.id,
        application_id=application_id,
        material=material,
        filename=file.filename or "upload",
        content_type=file.content_type,
        data=data,
    )
    await actions.record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident_id,
        mandate=m,
        action="material_uploaded",
        subject_id=application_id,
        data={"material": material, "size": len(data)},
    )
    return MaterialUploaded(upload=result)


@router.patch("/agent/residents/{resident_id}/elderly-mode")
async def resident_elderly_mode(
    resident_id: str, body: ElderlyModeIn, agent: Agent, session: SessionDep
) -> ElderlyModeOut:
    """Switch a resident's elderly mode (needs the "settings" scope)."""
    account = await resident_settings.set_elderly_mode(
        session, agent=agent, resident_id=resident_id, enabled=body.enabled
    )
    return ElderlyModeOut(resident_id=account.id, elderly_mode=account.elderly_mode)


# -- residents ---------------------------------------------------------------------------------


@router.get("/me/mandates")
async def my_mandates(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = MAX_LIMIT
) -> ResidentsMandates:
    """Who may act for me, for what, until when; newest first, page on with ``cursor``."""
    rows, next_cursor = await mandates.mandates_of_resident(session, principal.id, cursor=cursor, limit=limit)
    return ResidentsMandates(
        mandates=[await mandates.for_resident(session, m) for m in rows], next_cursor=next_cursor
    )


@router.delete("/me/mandates/{mandate_id}")
async def withdraw_my_mandate(
    mandate_id: str, principal: CurrentAccount, session: SessionDep
) -> ResidentsMandate:
    """Withdraw a mandate: the agent can no longer act for me."""
    m = await mandates.withdraw_own_mandate(session, mandate_id=mandate_id, resident=principal)
    return await mandates.for_resident(session, m)


@router.get("/me/agent-actions")
async def my_agent_actions(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 100
) -> ActionList:
    """What agents did for me, with the station and the mandate used; newest first, page on with
    ``cursor``."""
    found, next_cursor = await actions.actions_for_resident(session, principal.id, cursor=cursor, limit=limit)
    return ActionList(actions=found, next_cursor=next_cursor)
