"""The ``liaison_stations`` capability: the assistant answers "where is the nearest 代办点" from it."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import sessionmaker
from app_api.platform.agents.models import STATION_KINDS, Station
from app_api.platform.column import register_capability


def station_out(st: Station) -> dict[str, Any]:
    return {
        "id": st.id,
        "code": st.code,
        "name": st.name,
        "kind": st.kind,
        "kind_name": STATION_KINDS.get(st.kind, st.kind),
        "city": st.city,
        "district": st.district,
        "address": st.address,
        "hours": st.hours,
        "contact_name": st.contact_name,
        "phone": st.contact_phone,
    }


class StationDirectory:
    async def list(
        self, city: str | None = None, *, session: AsyncSession | None = None
    ) -> list[dict[str, Any]]:
        from app_api.platform.agents.service import list_stations

        if session is not None:
            return [station_out(s) for s in await list_stations(session, city=city)]
        async with sessionmaker()() as s:
            return [station_out(st) for st in await list_stations(s, city=city)]

    nearest = list


register_capability("liaison_stations", StationDirectory())
