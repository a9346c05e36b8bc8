"""Sandboxes for the three providers, each served by uvicorn on a free loopback port, and a
merchant-side receiver that verifies notifications with our providers (the real SDKs over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from payments.providers.base import InvalidNotification, MemoryReplayGuard, Notification
from payments.sandbox.common import ThreadServer, serve_in_thread


@dataclass
class Receiver:
    """The merchant's notify endpoint, reduced to verification: records what was accepted/refused."""

    providers: dict[str, Any] = field(default_factory=dict)
    accepted: list[Notification] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""

    def notify_url(self, name: str) -> str:
        return f"{self.url}/notify/{name}"

    async def handle(self, request: Request) -> Response:
        provider = self.providers[request.path_params["name"]]
        body = await request.body()
        try:
            note = await provider.parse_notification(dict(request.headers), body)
        except InvalidNotification as exc:
            self.refused.append((exc.reason, str(exc)))
            ack = provider.acknowledge(False, exc.reason)
        else:
            self.accepted.append(note)
            ack = provider.acknowledge(True)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)

    def clear(self) -> None:
        self.accepted.clear()
        self.refused.clear()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/notify/{name}", rec.handle, methods=["POST"])])
    server = serve_in_thread(app)
    rec.url = server.url
    yield rec
    server.stop()


@pytest.fixture(scope="session")
def v2_sandbox() -> Iterator[tuple[Any, ThreadServer]]:
    from payments.sandbox.wechat_v2 import WeChatPayV2Sandbox

    sandbox = WeChatPayV2Sandbox()
    server = serve_in_thread(sandbox.app)
    yield sandbox, server
    server.stop()


@pytest.fixture(scope="session")
def v3_sandbox() -> Iterator[tuple[Any, ThreadServer]]:
    from payments.sandbox.wechat_v3 import WeChatPayV3Sandbox

    sandbox = WeChatPayV3Sandbox()
    server = serve_in_thread(sandbox.app)
    yield sandbox, server
    server.stop()


@pytest.fixture(scope="session")
def alipay_sandbox() -> Iterator[tuple[Any, ThreadServer]]:
    from payments.sandbox.alipay import AlipaySandbox

    sandbox = AlipaySandbox()
    server = serve_in_thread(sandbox.app)
    yield sandbox, server
    server.stop()


@pytest.fixture
def replay_guard() -> MemoryReplayGuard:
    return MemoryReplayGuard()
