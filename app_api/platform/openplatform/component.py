"""Third-party columns and the OpenID Connect provider they sign residents in with."""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.component import Component, Mount
from app_api.platform.openplatform import (
    cashier_models,
    cashier_notify,
    cashier_router,
    cashier_sweep,
    models,
    router,
    tasks,
    workbench,
)


async def _seed(session: AsyncSession) -> Any:
    """The example column of docs/examples/school_fees, in development only (``demo``)."""
    from app_api.platform.openplatform.demo import seed

    return await seed(session)


component = Component(
    name="app_api.platform.openplatform",
    routers=(
        Mount(router.router),
        Mount(router.well_known, prefix=""),
        Mount(cashier_router.router),
        Mount(workbench.router),
    ),
    models=(models, cashier_models),
    tasks=(tasks, cashier_notify, cashier_sweep),
    seed=_seed,
)
