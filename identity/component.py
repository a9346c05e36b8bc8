"""Identity: levels, face verification with liveness, step-up tokens."""

from fastapi import APIRouter

import identity
from app_api.core.component import Component, Mount, Sandbox
from identity import models, router, tasks


def _sandbox() -> APIRouter:
    from identity.sandbox.realperson import build_router

    return build_router()


component = Component(
    name="identity",
    routers=(Mount(router.router),),
    sandboxes=(Sandbox("/sandbox/realperson", _sandbox),),
    models=(models,),
    tasks=(tasks,),
    shutdown=identity.shutdown,
)
