"""Stations (代办点) and their agents: the directory, upkeep by admins, assigning agents."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.errors import Conflict
from app_api.platform import audit
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account, Role
from app_api.platform.accounts.principal import Principal, invalidate
from app_api.platform.agents import errors
from app_api.platform.agents.models import STATION_KINDS, Station
from app_api.platform.agents.schemas import StationIn, StationOut, StationUpdate


def station_out(st: Station) -> StationOut:
    return StationOut(
        id=st.id,
        code=st.code,
        name=st.name,
        kind=st.kind,
        kind_name=STATION_KINDS.get(st.kind, st.kind),
        city=st.city,
        district=st.district,
        address=st.address,
        hours=st.hours,
        contact_name=st.contact_name,
        phone=st.contact_phone,
    )


async def list_stations(
    session: AsyncSession, *, city: str | None = None, kind: str | None = None
) -> list[Station]:
    q = select(Station).where(col(Station.active).is_(True))
    if city:
        q = q.where(col(Station.city).contains(city.strip()))
    if kind:
        q = q.where(Station.kind == kind)
    return list((await session.exec(q.order_by(col(Station.city), col(Station.code)))).all())


async def get_station(session: AsyncSession, station_id: str) -> Station:
    st = await session.get(Station, station_id)
    if st is None:
        raise errors.StationNotFound()
    return st


async def agent_station(session: AsyncSession, agent: Principal) -> Station:
    if not agent.has(Role.agent.value) or not agent.station_id:
        raise errors.NotAssigned()
    st = await session.get(Station, agent.station_id)
    if st is None or not st.active:
        raise errors.NotAssigned("您所在的代办点已停用或不存在，请联系管理员")
    return st


async def assign_agent(
    session: AsyncSession, *, station: Station, phone: str, password: str, actor_id: str
) -> Account:
    existing = await accounts.find_by_phone(session, phone)
    roles = sorted({*(existing.roles if existing else []), Role.agent.value} - {Role.resident.value})
    account = await accounts.create_staff(
        session, phone=phone, password=password, roles=roles, actor_id=actor_id, station_id=station.id
    )
    if account.station_id != station.id:  # create_staff keeps an old station; moving is explicit here
        account.station_id = station.id
        session.add(account)
        await session.flush()
        await invalidate(account.id)
    await audit.record(
        session,
        action="agents.agent_assigned",
        actor_id=actor_id,
        subject_type="account",
        subject_id=account.id,
        data={"station_id": station.id},
    )
    return account


async def create_station(session: AsyncSession, body: StationIn, *, actor_id: str) -> Station:
    if (await session.exec(select(Station).where(Station.code == body.code))).first() is not None:
        raise Conflict("代办点编码已存在", code_value=body.code)
    st = Station(**body.model_dump())
    session.add(st)
    await session.flush()
    await audit.record(
        session,
        action="agents.station_created",
        actor_id=actor_id,
        subject_type="app_station",
        subject_id=st.id,
        data={"code": st.code, "city": st.city},
    )
    return st


async def update_station(
    session: AsyncSession, station_id: str, body: StationUpdate, *, actor_id: str
) -> Station:
    st = await get_station(session, station_id)
    changes = body.model_dump(exclude_none=True)
    for k, v in changes.items():
        setattr(st, k, v)
    session.add(st)
    await session.flush()
    await audit.record(
        session,
        action="agents.station_changed",
        actor_id=actor_id,
        subject_type="app_station",
        subject_id=st.id,
        data={"fields": sorted(changes)},
    )
    return st
