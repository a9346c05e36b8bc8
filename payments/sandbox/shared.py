"""One set of payment sandboxes for every process serving one development api.

The sandboxes keep their orders, refunds and bill download tokens in memory. Under ``wojia serve
--workers N`` each worker mounts ``/sandbox/payments``, and a request lands on whichever worker
accepts it: an order created in one worker's sandbox would be unknown to the next. So one process
owns the sandboxes (it holds an exclusive lock on a file next to the keys file) and also serves them
on a loopback port written next to it; the other workers forward ``/sandbox/payments`` requests to
that port. When the owner exits, its lock is released and the next worker that cannot reach it
takes over (with empty sandboxes: development state, not data).

Processes are of one api when they serve the same sandbox URL (the lock and port files are named
after it), so a test's in-process app and a ``wojia serve`` it starts on another port stay apart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from payments.sandbox.common import ThreadServer, serve_in_thread

log = logging.getLogger(__name__)

# Hop-by-hop and framing headers the forwarder sets itself.
_SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


class SharedSandboxes:
    """ASGI app for ``/sandbox/payments``: the local sandboxes in the owner, a forwarder elsewhere."""

    def __init__(self, local: ASGIApp, *, state_dir: Path, base_url: str) -> None:
        self.local = local
        self.boxes: Any = None  # what ``local`` serves (set by the registry)
        name = hashlib.sha256(base_url.encode()).hexdigest()[:16]
        self.lock_path = state_dir / f"payments-sandbox-{name}.lock"
        self.port_path = state_dir / f"payments-sandbox-{name}.port"
        self._lock_file: IO[bytes] | None = None
        self._server: ThreadServer | None = None
        self._guard = threading.Lock()
        state_dir.mkdir(parents=True, exist_ok=True)
        self._try_own()

    @property
    def owner(self) -> bool:
        return self._server is not None

    def _try_own(self) -> bool:
        with self._guard:
            if self._server is not None:
                return True
            f = open(self.lock_path, "a+b")  # noqa: SIM115 (held open for the life of the process)
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                return False
            self._lock_file = f
            self._server = serve_in_thread(self.local)
            port = self._server.url.rsplit(":", 1)[1]
            fd, tmp = tempfile.mkstemp(prefix=".port-", dir=self.port_path.parent)
            with os.fdopen(fd, "w") as out:
                out.write(port)
            os.replace(tmp, self.port_path)
            log.info("payments sandboxes owned by pid %s, also on port %s", os.getpid(), port)
            return True

    def close(self) -> None:
        with self._guard:
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def _owner_url(self) -> str | None:
        try:
            return f"http://127.0.0.1:{int(self.port_path.read_text().strip())}"
        except (OSError, ValueError):
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.owner:
            await self.local(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        for _ in range(2):
            url = self._owner_url()
            if url is not None:
                with contextlib.suppress(httpx.ConnectError):
                    await self._forward(url, scope, body, send)
                    return
            # The owner is gone (or never was): take over if nobody else has.
            if self._try_own():
                await self.local(scope, _replay(body), send)
                return
        await _send(send, 503, [(b"content-type", b"text/plain; charset=utf-8")], "支付沙箱暂不可用".encode())

    async def _forward(self, owner: str, scope: Scope, body: bytes, send: Send) -> None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        query = scope.get("query_string", b"").decode("latin-1")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _SKIP_HEADERS
        ]
        async with httpx.AsyncClient(timeout=60) as client:
            resp = await client.request(
                scope["method"], owner + path + (f"?{query}" if query else ""), content=body, headers=headers
            )
        out = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in resp.headers.multi_items()
            if k.lower() not in _SKIP_HEADERS | {"content-encoding"}
        ]
        await _send(send, resp.status_code, out, resp.content)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
