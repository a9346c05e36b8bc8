"""Stations (public directory, admin upkeep), agents' work, residents' view of their mandates."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, UploadFile

from app_api.core.crypto import mask_phone
from app_api.core.db import SessionDep
from app_api.core.errors import Conflict
from app_api.platform.access import Admin, CurrentAccount, public, require_roles
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents import filing, service
from app_api.platform.agents.capability import station_out
from app_api.platform.agents.models import SCOPES, Station
from app_api.platform.agents.schemas import (
    AgentIn,
    BatchIn,
    ElderlyModeIn,
    InPersonMandate,
    MandateScope,
    SmsConfirm,
    StationIn,
    StationUpdate,
    SubmissionIn,
)

router = APIRouter(tags=["agents"])
Agent = Annotated[Principal, Depends(require_roles("agent"))]


@router.get("/stations", dependencies=[Depends(public)])
async def stations(session: SessionDep, city: str | None = None, kind: str | None = None) -> dict[str, Any]:
    """Liaison stations and village agent points (代办点), by city."""
    return {"stations": [station_out(s) for s in await service.list_stations(session, city=city, kind=kind)]}


@router.get("/stations/{station_id}", dependencies=[Depends(public)])
async def station(station_id: str, session: SessionDep) -> dict[str, Any]:
    """One station: address, hours, contacts."""
    return station_out(await service.get_station(session, station_id))


@router.post("/admin/stations", status_code=201)
async def create_station(body: StationIn, admin: Admin, session: SessionDep) -> dict[str, Any]:
    """Open a station."""
    from sqlmodel import select

    if (await session.exec(select(Station).where(Station.code == body.code))).first() is not None:
        raise Conflict("代办点编码已存在", code_value=body.code)
    st = Station(**body.model_dump())
    session.add(st)
    await session.flush()
    from app_api.platform import audit

    await audit.record(
        session,
        action="agents.station_created",
        actor_id=admin.id,
        subject_type="app_station",
        subject_id=st.id,
        data={"code": st.code, "city": st.city},
    )
    return station_out(st)


@router.patch("/admin/stations/{station_id}")
async def update_station(
    station_id: str, body: StationUpdate, admin: Admin, session: SessionDep
) -> dict[str, Any]:
    """Change a station's details, or close it."""
    st = await service.get_station(session, station_id)
    changes = body.model_dump(exclude_none=True)
    for k, v in changes.items():
        setattr(st, k, v)
    session.add(st)
    await session.flush()
    from app_api.platform import audit

    await audit.record(
        session,
        action="agents.station_changed",
        actor_id=admin.id,
        subject_type="app_station",
        subject_id=st.id,
        data={"fields": sorted(changes)},
    )
    return station_out(st)


@router.post("/admin/stations/{station_id}/agents", status_code=201)
async def assign_agent(station_id: str, body: AgentIn, admin: Admin, session: SessionDep) -> dict[str, Any]:
    """Make an account an agent of this station (creating the account if needed)."""
    st = await service.get_station(session, station_id)
    account = await service.assign_agent(
        session, station=st, phone=body.phone, password=body.password, actor_id=admin.id
    )
    return {"id": account.id, "phone": mask_phone(body.phone), "roles": account.roles, "station_id": st.id}


# -- agents ------------------------------------------------------------------------------------


@router.get("/agent/me")
async def agent_me(agent: Agent, session: SessionDep) -> dict[str, Any]:
    """The agent's station and the scopes a mandate can grant."""
    st = await service.agent_station(session, agent)
    return {
        "agent_id": agent.id,
        "station": station_out(st),
        "scopes": SCOPES,
        "filing_available": filing.filer() is not None,
    }


@router.post("/agent/mandates/sms-requests", status_code=202)
async def request_mandate(body: MandateScope, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Send the resident an SMS code naming the station, the scope and the period."""
    return await service.request_sms_mandate(
        session, agent=agent, phone=body.phone, scopes=body.scopes, items=body.items, days=body.days
    )


@router.post("/agent/mandates/sms-confirm", status_code=201)
async def confirm_mandate(body: SmsConfirm, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Record the mandate with the code the resident read out from their own phone."""
    m = await service.confirm_sms_mandate(session, agent=agent, request_id=body.request_id, code=body.code)
    return await service.mandate_out(session, m, for_agent=True)


@router.post("/agent/mandates/in-person", status_code=201)
async def in_person_mandate(body: InPersonMandate, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Record a mandate given in person, with the agent's attestation of the ID check."""
    m = await service.record_in_person_mandate(
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
    return await service.mandate_out(session, m, for_agent=True)


@router.get("/agent/mandates")
async def agent_mandates(agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Mandates this agent holds, live and ended."""
    rows = await service.mandates_of_agent(session, agent.id)
    return {"mandates": [await service.mandate_out(session, m, for_agent=True) for m in rows]}


@router.delete("/agent/mandates/{mandate_id}")
async def end_mandate(mandate_id: str, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """End a mandate this agent holds (the resident is told)."""
    m = await service.withdraw_mandate(session, mandate_id=mandate_id, by=agent)
    return await service.mandate_out(session, m, for_agent=True)


@router.post("/agent/submissions")
async def submit(body: SubmissionIn, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """File one application for a resident; resending the same client key returns the first result."""
    await service.lock_for_writing(session, agent.id)
    return await service.submit(session, agent=agent, item=body)


@router.post("/agent/submissions/batch")
async def submit_batch(body: BatchIn, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Submissions queued offline: filed one by one, each with its own result; safe to resend."""
    return await service.submit_batch(session, agent=agent, items=body.items)


@router.get("/agent/residents/{resident_id}/applications")
async def resident_applications(resident_id: str, agent: Agent, session: SessionDep) -> dict[str, Any]:
    """Track a resident's applications (needs the "track" scope)."""
    await service.act_for(session, agent=agent, resident_id=resident_id, scope="track", action="tracked")
    apps = await filing.applications_of(session, resident_id)
    if apps is None:
        from app_api.platform.agents.errors import FilingUnavailable

        raise FilingUnavailable("办理进度查询暂未开通")
    return {"applications": apps}


@router.post("/agent/residents/{resident_id}/applications/{application_id}/materials", status_code=201)
async def upload_material(
    resident_id: str,
    application_id: str,
    agent: Agent,
    session: SessionDep,
    material: Annotated[str, Form(min_length=1, max_length=100)],
    file: UploadFile,
) -> dict[str, Any]:
    """Upload a material for a resident's application (needs the "upload" scope)."""
    m, station = await service.require_mandate(session, agent=agent, resident_id=resident_id, scope="upload")
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
    await service.record_action(
        session,
        agent_id=agent.id,
        station_id=station.id,
        resident_id=resident_id,
        mandate=m,
        action="material_uploaded",
        subject_id=application_id,
        data={"material": material, "size": len(data)},
    )
    return {"upload": result}


@router.patch("/agent/residents/{resident_id}/elderly-mode")
async def resident_elderly_mode(
    resident_id: str, body: ElderlyModeIn, agent: Agent, session: SessionDep
) -> dict[str, Any]:
    """Switch a resident's elderly mode (needs the "settings" scope)."""
    account = await service.set_elderly_mode(
        session, agent=agent, resident_id=resident_id, enabled=body.enabled
    )
    return {"resident_id": account.id, "elderly_mode": account.elderly_mode}


# -- residents ---------------------------------------------------------------------------------


@router.get("/me/mandates")
async def my_mandates(principal: CurrentAccount, session: SessionDep) -> dict[str, Any]:
    """Who may act for me, for what, until when."""
    rows = await service.mandates_of_resident(session, principal.id)
    return {"mandates": [await service.mandate_out(session, m, for_agent=False) for m in rows]}


@router.delete("/me/mandates/{mandate_id}")
async def withdraw_my_mandate(
    mandate_id: str, principal: CurrentAccount, session: SessionDep
) -> dict[str, Any]:
    """Withdraw a mandate: the agent can no longer act for me."""
    from app_api.platform.agents.errors import MandateNotFound
    from app_api.platform.agents.models import Mandate

    found = await session.get(Mandate, mandate_id)
    if found is None or found.resident_id != principal.id:
        raise MandateNotFound()
    m = await service.withdraw_mandate(session, mandate_id=mandate_id, by=principal)
    return await service.mandate_out(session, m, for_agent=False)


@router.get("/me/agent-actions")
async def my_agent_actions(principal: CurrentAccount, session: SessionDep) -> dict[str, Any]:
    """What agents did for me, with the station and the mandate used."""
    rows = await service.actions_for_resident(session, principal.id)
    names = {}
    for a in rows:
        if a.station_id not in names:
            st = await session.get(Station, a.station_id)
            names[a.station_id] = st.name if st else None
    return {
        "actions": [
            {
                "action": a.action,
                "at": a.at,
                "station": names[a.station_id],
                "mandate_id": a.mandate_id,
                "subject_id": a.subject_id,
            }
            for a in rows
        ]
    }
