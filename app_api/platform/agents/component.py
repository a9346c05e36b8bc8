"""Village and liaison-station agents: stations, mandates, filings on behalf of residents."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.component import Component, Mount
from app_api.platform.agents import capability, models, router


async def _seed(session: AsyncSession) -> Any:
    from app_api.platform.agents.seed import seed

    return await seed(session)


component = Component(
    name="app_api.platform.agents",
    routers=(Mount(router.router),),
    models=(models,),
    seed=_seed,
)
# ``capability`` offers the station directory as ``LiaisonStations`` on import.
__all__ = ["capability", "component"]
