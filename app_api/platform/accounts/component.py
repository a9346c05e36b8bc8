"""Accounts: SMS and staff login, tokens, profiles; the development SMS inbox."""

from app_api.core.component import Component, Mount
from app_api.platform.accounts import models, router

component = Component(
    name="app_api.platform.accounts",
    routers=(Mount(router.router),),
    dev_routers=(Mount(router.dev_router),),
    models=(models,),
)
