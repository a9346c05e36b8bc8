"""Third-party columns and the OpenID Connect provider they sign residents in with."""

from app_api.core.component import Component, Mount
from app_api.platform.openplatform import (
    cashier_models,
    cashier_notify,
    cashier_router,
    cashier_sweep,
    models,
    router,
    tasks,
)

component = Component(
    name="app_api.platform.openplatform",
    routers=(Mount(router.router), Mount(router.well_known, prefix=""), Mount(cashier_router.router)),
    models=(models, cashier_models),
    tasks=(tasks, cashier_notify, cashier_sweep),
)
