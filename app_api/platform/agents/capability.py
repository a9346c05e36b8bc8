"""The ``LiaisonStations`` capability: the assistant answers "where is the nearest 代办点" from it.

Offered on import (the agents component imports this module).
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import sessionmaker
from app_api.platform.agents.stations import list_stations, station_out
from app_api.platform.capabilities import LiaisonStations, provide


class StationDirectory:
    async def nearest(self, *, city: str | None, session: AsyncSession | None = None) -> list[dict[str, Any]]:
        """Open stations in ``city`` (all of them without one), as the public directory lists them."""
        if session is not None:
            return [station_out(st).model_dump() for st in await list_stations(session, city=city)]
        async with sessionmaker()() as s:
            return [station_out(st).model_dump() for st in await list_stations(s, city=city)]


provide(LiaisonStations, StationDirectory())
