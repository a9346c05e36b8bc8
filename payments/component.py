"""Payments: the ledger, the providers' notify endpoints, refunds, reconciliation."""

from starlette.types import ASGIApp

from app_api.core.component import Component, Mount, Sandbox
from payments import external_cashier, models, router, tasks
from payments.registry import SANDBOX_PREFIX


def sandbox_app() -> ASGIApp | None:
    """The three protocol sandboxes in one ASGI app, shared by the api's workers, in sandbox mode
    (None in live mode)."""
    from payments.config import get_payments_settings
    from payments.registry import sandbox_asgi

    if get_payments_settings().mode != "sandbox":
        return None
    app: ASGIApp | None = sandbox_asgi()
    return app


component = Component(
    name="payments",
    routers=(Mount(router.router_all),),
    sandboxes=(Sandbox(SANDBOX_PREFIX, sandbox_app, lazy=True),),
    models=(models,),
    # external_cashier: the open platform's cashier port and its paid hook, loaded with the tasks.
    tasks=(tasks, external_cashier),
)
