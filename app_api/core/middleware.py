"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs throughput on every request)."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app_api.core.errors import PROBLEM_JSON, PayloadTooLarge
from app_api.core.input_guard import CLIENT_GONE
from app_api.core.logging import request_id_var
from app_api.core.metrics import LATENCY, REQUESTS

log = logging.getLogger("wojia.access")


class _TooLarge(Exception):
    pass


# Security headers, added to every response that does not set its own (see SecurityHeadersMiddleware).
_ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
# Data (JSON, problem+json, CSV, images): nothing in it may run or be framed.
CSP_DATA = b"default-src 'none'; frame-ancestors 'none'"
# Server-rendered pages under /api/ (the staff console): inline styles and same-origin forms only.
CSP_API_HTML = (
    b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    b"frame-ancestors 'none'"
)
# Other pages (the development /docs and sandboxes load scripts from elsewhere): never framed.
CSP_OTHER_HTML = b"frame-ancestors 'none'"
HSTS = b"max-age=31536000"


def with_security_headers(
    headers: list[tuple[bytes, bytes]], *, path: str, hsts: bool = False
) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the security headers it does not set itself.

    Under ``/api/`` every response is ``Cache-Control: no-store`` unless the route chose its own
    caching: answers there carry personal data more often than not, and a shared cache or the
    browser's history must not keep them.
    """
    present = {name.lower() for name, _ in headers}
    out = list(headers)
    out.extend(pair for pair in _ALWAYS if pair[0] not in present)
    if b"content-security-policy" not in present:
        ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        api = path.startswith("/api/")
        if ctype.startswith(b"text/html"):
            out.append((b"content-security-policy", CSP_API_HTML if api else CSP_OTHER_HTML))
        else:
            out.append((b"content-security-policy", CSP_DATA))
    if path.startswith("/api/") and b"cache-control" not in present:
        out.append((b"cache-control", b"no-store"))
    if hsts and b"strict-transport-security" not in present:
        out.append((b"strict-transport-security", HSTS))
    return out


class SecurityHeadersMiddleware:
    """Security headers on every response (outermost, so that 413 and 422 answers get them too).

    ``hsts``: also ``Strict-Transport-Security`` (when the public address is https).
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = with_security_headers(
                    list(message.get("headers", [])), path=path, hsts=self.hsts
                )
            await send(message)

        await self.app(scope, receive, send_wrapped)


class RequestContextMiddleware:
    """Request id, body-size limit (413 before the body is read when Content-Length says so), metrics."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"").decode("latin-1")[:64] or uuid.uuid4().hex
        token = request_id_var.set(rid)
        ctype = headers.get(b"content-type", b"")
        limit = self.max_upload if ctype.startswith(b"multipart/") else self.max_body
        start = time.perf_counter()
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            clen = headers.get(b"content-length")
            if clen is not None and clen.isdigit() and int(clen) > limit:
                await self._too_large(send_wrapped, limit, rid)
                return
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _TooLarge()
                return message

            try:
                await self.app(scope, receive_limited, send_wrapped)
            except _TooLarge:
                await self._too_large(send_wrapped, limit, rid)
        finally:
            if scope.get(CLIENT_GONE):
                status = 499  # closed by the client before it sent its whole request (nginx's code)
            route = scope.get("route")
            path = getattr(route, "path", "<unmatched>")
            elapsed = time.perf_counter() - start
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            LATENCY.labels(scope["method"], path).observe(elapsed)
            request_id_var.reset(token)

    async def _too_large(self, send: Send, limit: int, rid: str) -> None:
        err = PayloadTooLarge(f"请求内容超过 {limit // 1024} KB 的上限", limit_bytes=limit)
        body = json.dumps(err.to_problem(request_id=rid), ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
