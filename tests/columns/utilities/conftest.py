from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from utilities_helpers import configure_billers, make_billers

from columns.utilities.sandbox.biller import BillerSandbox, sandbox_app
from payments.sandbox.common import free_port, serve_in_thread


@pytest.fixture(scope="session")
def billers() -> Iterator[dict[str, BillerSandbox]]:
    sandboxes = make_billers()
    server = serve_in_thread(sandbox_app(sandboxes))
    configure_billers(server.url)
    yield sandboxes
    server.stop()


@pytest.fixture(autouse=True)
def _clean_faults(billers: dict[str, BillerSandbox]) -> None:
    for s in billers.values():
        s.clear_faults()


@pytest.fixture(scope="module")
async def pay_sandbox(live_url: str) -> AsyncIterator[dict[str, str]]:
    """Payment-provider sandboxes on loopback, the providers pointed at them, and their notifications
    sent to payments' own notify route of the app served on loopback (``live_url``)."""
    from payments import registry

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    providers, sandboxes = registry.build_sandbox_providers(base)
    server = serve_in_thread(sandboxes.asgi_app(), port=port)
    urls = {name: f"{base}/{name}" for name in ("wechat_v2", "wechat_v3", "alipay")}
    # Put back what was configured before, so later test modules see the registry as they expect.
    saved = (registry._providers, registry._sandboxes, registry._notify_base)
    registry.configure(providers, notify_base=live_url, sandbox_set=sandboxes)
    yield urls
    with registry._lock:
        registry._providers, registry._sandboxes, registry._notify_base = saved
    server.stop()
