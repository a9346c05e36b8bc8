"""Payments: the ledger, the providers' notify endpoints, refunds, reconciliation."""

from starlette.types import ASGIApp

from app_api.core.component import Component, Mount, Sandbox
from payments import models, router, tasks


def _sandboxes() -> ASGIApp | None:
    from payments.config import get_payments_settings
    from payments.registry import sandboxes

    if get_payments_settings().mode != "sandbox":
        return None
    boxes = sandboxes()
    return boxes.asgi_app() if boxes is not None else None


component = Component(
    name="payments",
    routers=(Mount(router.router_all),),
    sandboxes=(Sandbox("/sandbox/payments", _sandboxes),),
    models=(models,),
    tasks=(tasks,),
)
