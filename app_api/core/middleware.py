"""The api's edge middleware, one pure ASGI layer (no BaseHTTPMiddleware: it costs throughput on
every request), and the security headers every response gets."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app_api.core.errors import PROBLEM_JSON, PayloadTooLarge
from app_api.core.input_guard import CLIENT_GONE
from app_api.core.logging import request_id_var
from app_api.core.metrics import IN_FLIGHT, LATENCY, REQUESTS

if TYPE_CHECKING:
    from app_api.core.shedding import Admission

log = logging.getLogger("wojia.access")


class _TooLarge(Exception):
    pass


# Security headers, added to every response that does not set its own (see EdgeMiddleware).
_ALWAYS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)
# Data (JSON, problem+json, CSV, images): nothing in it may run or be framed.
CSP_DATA = b"default-src 'none'; frame-ancestors 'none'"
# Server-rendered pages under /api/ (the staff console and workbench): inline styles, same-origin forms
# and same-origin images (a material's preview on the reviewer's application page).
CSP_API_HTML = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; "
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


# Development sandboxes of external systems mounted in the api: neither counted nor shed (see
# app_api.core.shedding.UNCOUNTED_PREFIX; repeated here, that module imports this one).
_UNCOUNTED_PREFIX = "/sandbox/"
# Scope key: the body limit of the request being refused with 413 (read by the 413 responder).
_LIMIT_KEY = "wojia.body_limit"


class EdgeMiddleware:
    """The api's one middleware layer, outermost (pure ASGI), in this order:

    1. admission (load shedding, ``app_api.core.shedding.Admission``): a shed request is answered
       503 at once, before any other work;
    2. request id (``X-Request-Id`` taken from the request or made up, set in the logging context
       and on the response);
    3. body-size limit (413 before the body is read when Content-Length says so, else as soon as
       the body read exceeds it);
    4. security headers on every response (``with_security_headers``), 413 and 422 included;
    5. metrics (count and latency per route and status; 499 when the client went away).

    It replaces the four layers the api had (shedding, security headers, request context, and the
    admission around them): each layer cost a coroutine and a ``send`` wrapper on every request.
    ``cors``: keyword arguments of Starlette's ``CORSMiddleware``, which then runs inside this
    layer (its answers get the security headers and the request id) and around the 413 answer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int,
        max_upload: int,
        hsts: bool = False,
        admission: Admission | None = None,
        cors: dict[str, Any] | None = None,
    ) -> None:
        self.max_body = max_body
        self.max_upload = max_upload
        self.hsts = hsts
        self.admission = admission
        self._too_large_app: ASGIApp = self._too_large
        if cors is not None:
            from starlette.middleware.cors import CORSMiddleware

            app = CORSMiddleware(app, **cors)
            self._too_large_app = CORSMiddleware(self._too_large, **cors)
        self.app = app
        # prometheus_client's labels() validates and locks on every call: keep the children.
        self._requests: dict[tuple[str, str, str], Counter] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self.admission is not None:
                send = self.admission.on_lifespan(send)
            await self.app(scope, receive, send)
            return
        admission = self.admission
        if admission is None or scope["path"].startswith(_UNCOUNTED_PREFIX):
            await self._serve(scope, receive, send)
            return
        over, priority = admission.refuses(scope["path"])
        if over:
            await admission.shed(scope, send, priority)
            return
        admission.in_flight += 1
        IN_FLIGHT.inc()
        try:
            await self._serve(scope, receive, send)
        finally:
            admission.in_flight -= 1
            IN_FLIGHT.dec()

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid_raw = clen = None
        ctype = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid_raw = value
            elif name == b"content-length":
                clen = value
            elif name == b"content-type":
                ctype = value
        rid = (rid_raw.decode("latin-1")[:64] if rid_raw else "") or os.urandom(16).hex()
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        token = request_id_var.set(rid)
        limit = self.max_upload if ctype.startswith(b"multipart/") else self.max_body
        path: str = scope["path"]
        hsts = self.hsts
        start = time.perf_counter()
        status = 500

        async def send_wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(rid_header)
                message["headers"] = with_security_headers(headers, path=path, hsts=hsts)
            await send(message)

        try:
            if clen is not None and clen.isdigit() and int(clen) > limit:
                scope[_LIMIT_KEY] = limit
                await self._too_large_app(scope, receive, send_wrapped)
            else:
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
                    scope[_LIMIT_KEY] = limit
                    await self._too_large_app(scope, receive, send_wrapped)
        finally:
            if scope.get(CLIENT_GONE):
                status = 499  # closed by the client before it sent its whole request (nginx's code)
            route = scope.get("route")
            route_path = getattr(route, "path", "<unmatched>")
            method: str = scope["method"]
            elapsed = time.perf_counter() - start
            key = (method, route_path, str(status))
            counter = self._requests.get(key)
            if counter is None:
                counter = self._requests[key] = REQUESTS.labels(*key)
            counter.inc()
            lkey = (method, route_path)
            latency = self._latency.get(lkey)
            if latency is None:
                latency = self._latency[lkey] = LATENCY.labels(*lkey)
            latency.observe(elapsed)
            request_id_var.reset(token)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit: int = scope[_LIMIT_KEY]
        err = PayloadTooLarge(f"请求内容超过 {limit // 1024} KB 的上限", limit_bytes=limit)
        body = json.dumps(err.to_problem(request_id=request_id_var.get()), ensure_ascii=False).encode()
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
