"""Third-party columns and the OpenID Connect provider they sign residents in with."""

from app_api.core.component import Component, Mount
from app_api.platform.openplatform import models, router, tasks

component = Component(
    name="app_api.platform.openplatform",
    routers=(Mount(router.router), Mount(router.well_known, prefix="")),
    models=(models,),
    tasks=(tasks,),
)
