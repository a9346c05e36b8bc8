"""The home screen and the column administration."""

from app_api.core.component import Component, Mount
from app_api.platform.home import models, router, workbench

component = Component(
    name="app_api.platform.home",
    routers=(Mount(router.router), Mount(router.admin_router), Mount(workbench.router)),
    models=(models,),
)
