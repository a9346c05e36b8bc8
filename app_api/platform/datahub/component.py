"""The city data center gateway, the certificate wallet, and the data exchange's sandbox in development."""

from fastapi import APIRouter

from app_api.core.component import Component, Mount, Sandbox
from app_api.platform.datahub import models, router, tasks


def _sandbox() -> APIRouter:
    from app_api.platform.datahub.sandbox.exchange import router as sandbox_router

    return sandbox_router


component = Component(
    name="app_api.platform.datahub",
    routers=(Mount(router.router),),
    sandboxes=(Sandbox("/sandbox/datahub", _sandbox),),
    models=(models,),
    tasks=(tasks,),
)
