"""The record of what agents did for residents (``app_agent_action``, mirrored in the audit log)."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.platform import audit
from app_api.platform.agents.models import AgentAction, Mandate, Station
from app_api.platform.agents.schemas import ActionOut


async def record_action(
    session: AsyncSession,
    *,
    agent_id: str,
    station_id: str,
    resident_id: str | None,
    mandate: Mandate | None,
    action: str,
    subject_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    if resident_id is not None:
        session.add(
            AgentAction(
                agent_id=agent_id,
                station_id=station_id,
                resident_id=resident_id,
                mandate_id=mandate.id if mandate else None,
                action=action,
                subject_id=subject_id,
                data=data or {},
            )
        )
    await audit.record(
        session,
        action=f"agents.{action}",
        actor_id=agent_id,
        subject_type="account",
        subject_id=resident_id,
        data={"station_id": station_id, "mandate_id": mandate.id if mandate else None, **(data or {})},
    )


async def actions_for_resident(
    session: AsyncSession, resident_id: str, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[ActionOut], str | None]:
    """What agents did for the resident, newest first after ``cursor``, with the station's name, and
    the next page's cursor."""
    q = paging.after(
        select(AgentAction).where(AgentAction.resident_id == resident_id),
        at_column=col(AgentAction.at),
        id_column=col(AgentAction.id),
        cursor=cursor,
        limit=limit,
    )
    rows, next_cursor = paging.page((await session.exec(q)).all(), limit=limit, key=lambda a: (a.at, a.id))
    ids = {a.station_id for a in rows}
    names: dict[str, str] = {}
    if ids:
        found = await session.exec(select(Station).where(col(Station.id).in_(ids)))
        names = {st.id: st.name for st in found.all()}
    out = [
        ActionOut(
            action=a.action,
            at=a.at,
            station=names.get(a.station_id),
            mandate_id=a.mandate_id,
            subject_id=a.subject_id,
        )
        for a in rows
    ]
    return out, next_cursor
