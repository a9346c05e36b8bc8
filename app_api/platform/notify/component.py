"""Notifications: the resident's inbox and settings, the delivery jobs, the tables."""

from app_api.core.component import Component, Mount
from app_api.platform.notify import models, router, tasks

component = Component(
    name="app_api.platform.notify",
    routers=(Mount(router.router),),
    models=(models,),
    tasks=(tasks,),
)
