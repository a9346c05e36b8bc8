"""The WeChat and Alipay sandboxes on loopback ports, and the bridge configured to use them."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import free_port


class ThreadServer:
    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning", access_log=False
            )
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("sandbox did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


TEMPLATE_ID = "tmpl-gov-status-0001"


@pytest.fixture(scope="session")
def wechat_sandbox() -> Iterator[Any]:
    from miniprogram_bridge import wechat
    from miniprogram_bridge.config import get_mp_settings
    from miniprogram_bridge.sandbox.wechat import WeChatSandbox

    sandbox = WeChatSandbox()
    s = get_mp_settings()
    sandbox.add_app(s.wechat_app_id, s.wechat_app_secret.get_secret_value())
    sandbox.add_template(TEMPLATE_ID, ["thing1", "phrase2", "time3"])
    server = ThreadServer(sandbox.app)
    s.wechat_api_base = server.url + "/"
    s.wechat_template_ids = {"test.status_changed": TEMPLATE_ID}
    wechat.reset()
    yield sandbox
    server.stop()


@pytest.fixture(scope="session")
def alipay_sandbox() -> Iterator[Any]:
    from pydantic import SecretStr

    from miniprogram_bridge import alipay
    from miniprogram_bridge.config import get_mp_settings
    from miniprogram_bridge.sandbox.alipay import AlipayOAuthSandbox

    sandbox = AlipayOAuthSandbox()
    app = sandbox.add_app()
    server = ThreadServer(sandbox.app)
    s = get_mp_settings()
    s.alipay_app_id = app.app_id
    s.alipay_private_key = SecretStr(app.private_key_pkcs1)
    s.alipay_public_key = sandbox.alipay_public_key_pem
    s.alipay_server_url = server.url + "/gateway.do"
    alipay.reset()
    sandbox.client_app = app
    yield sandbox
    server.stop()
