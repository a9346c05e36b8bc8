from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from utilities_helpers import LedgerNotify, configure_billers, make_billers

from columns.utilities.sandbox import BillerSandbox, sandbox_app
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


async def _ensure_payments_tables() -> None:
    # payments has no migration branch yet; until it lands, build its tables from its models so the
    # column can be tested against the real ledger. A no-op once the migrations create them.
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    import payments.models  # noqa: F401
    from app_api.db import get_engine

    async with get_engine().begin() as conn:
        existing = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
        missing = [
            t
            for name, t in SQLModel.metadata.tables.items()
            if name.startswith("payments_") and name not in existing
        ]
        if missing:
            await conn.run_sync(lambda c: SQLModel.metadata.create_all(c, tables=missing))


@pytest.fixture(scope="session")
async def pay_sandbox(app: Any) -> AsyncIterator[dict[str, str]]:
    """Payment-provider sandboxes on loopback, providers pointed at them, notifications to the ledger."""
    import uvicorn

    import payments.tasks  # noqa: F401  (registers payments.notify_column with the broker)
    from payments import registry

    await _ensure_payments_tables()
    # Each sandbox on its own port: WeChat Pay v3 signs the request path without the base URL's
    # path, so it cannot sit under a mount prefix (registry.Sandboxes.asgi_app mounts all three).
    servers, urls = [], {}
    for name in ("wechat_v2", "wechat_v3", "alipay"):
        port = free_port()
        urls[name] = f"http://127.0.0.1:{port}"
    providers, sandboxes = _providers(urls)
    for name, sandbox in (
        ("wechat_v2", sandboxes.wechat_v2),
        ("wechat_v3", sandboxes.wechat_v3),
        ("alipay", sandboxes.alipay),
    ):
        servers.append(serve_in_thread(sandbox.app, port=int(urls[name].rsplit(":", 1)[1])))
    notify = LedgerNotify(providers=providers)
    nport = free_port()
    nserver = uvicorn.Server(
        uvicorn.Config(
            notify, host="127.0.0.1", port=nport, lifespan="off", log_config=None, access_log=False
        )
    )
    task = asyncio.create_task(nserver.serve())
    while not nserver.started:
        await asyncio.sleep(0.02)
    registry.configure(providers, notify_base=f"http://127.0.0.1:{nport}", sandbox_set=sandboxes)
    yield urls
    nserver.should_exit = True
    await task
    for server in servers:
        server.stop()


def _providers(urls: dict[str, str]) -> tuple[dict[str, Any], Any]:
    from payments.providers.alipay import AlipayConfig, AlipayProvider
    from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config
    from payments.providers.wechat_v3 import WeChatPayV3Provider, WeChatV3Config
    from payments.registry import PlatformReplayGuard, Sandboxes
    from payments.sandbox.alipay import AlipaySandbox
    from payments.sandbox.wechat_v2 import WeChatPayV2Sandbox
    from payments.sandbox.wechat_v3 import WeChatPayV3Sandbox

    v2, v3, ali = WeChatPayV2Sandbox(), WeChatPayV3Sandbox(), AlipaySandbox()
    m2, m3, app = v2.add_merchant(), v3.add_merchant(), ali.add_app()
    providers: dict[str, Any] = {
        "wechat_v2": WeChatPayV2Provider(
            WeChatV2Config(
                appid=m2.appid, mch_id=m2.mch_id, api_key=m2.api_key, base_url=urls["wechat_v2"] + "/"
            )
        ),
        "wechat_v3": WeChatPayV3Provider(
            WeChatV3Config(
                appid=m3.appid,
                mchid=m3.mchid,
                private_key=m3.private_key_pem,
                cert_serial_no=m3.cert_serial_no,
                apiv3_key=m3.apiv3_key,
                public_key=v3.platform_public_key_pem,
                public_key_id=v3.public_key_id,
                base_url=urls["wechat_v3"],
            ),
            replay_guard=PlatformReplayGuard(),
        ),
        "alipay": AlipayProvider(
            AlipayConfig(
                app_id=app.app_id,
                app_private_key=app.private_key_pkcs1,
                alipay_public_key=ali.alipay_public_key_pem,
                seller_id=app.pid,
                server_url=urls["alipay"] + "/gateway.do",
            )
        ),
    }
    return providers, Sandboxes(wechat_v2=v2, wechat_v3=v3, alipay=ali)
