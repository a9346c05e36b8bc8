"""Load shedding: a bound on the requests one api process serves at a time.

Without it, a burst beyond what the machine can serve queues inside every worker: each request
waits behind all the others, every answer comes late (p99 was 17.8 s at the load two cores serve)
and clients time out although the server is busy the whole time. With it, a worker serves at most
``WOJIA_MAX_IN_FLIGHT`` requests at once and answers the rest at once with 503 ``app.overloaded``
and ``Retry-After``: the requests it accepts keep their usual latency, the others learn right away
that they should come back.

Payment provider notifications are never shed (counted only; see ``NEVER_SHED_PREFIXES``). The
other priority paths (health, readiness and metrics, logins) are shed last: they may use
``WOJIA_IN_FLIGHT_PRIORITY_RESERVE`` slots more than ordinary requests. A load balancer that gets
no answer to its health check takes the instance out, and a resident who cannot log in cannot do
anything else either.

The count alone does not see a worker that is short of CPU (a busy neighbour, a burst of requests
it has not even read yet): every accepted request then waits behind the backlog of the event loop.
So the middleware also measures that wait, the event loop's lag (a probe sleeps ``LAG_PROBE_S``
and notes how late it woke up), and while the lag is above ``WOJIA_SHED_LOOP_LAG_MS`` (200 ms; not
checked in development and test) it sheds ordinary requests however few are in flight: the backlog
is answered 503 for a fraction of what serving it costs and the loop catches up, instead of every
request waiting for it. The lag is known the moment it builds up, not only when the probe wakes:
a request admitted while the probe is already overdue by more than the limit is itself part of
the backlog (the bench showed why: a burst that made the load generator open a thousand new
connections swamped the loop for a second or two before two late probes had been measured, and
the requests admitted meanwhile waited over a second; accepted p99 1.4-1.5 s in those runs).

The api checks admission first thing in its single edge layer (pure ASGI, no
``BaseHTTPMiddleware``: ``app_api.core.middleware.EdgeMiddleware``; ``LoadShedding`` is the same
check as a layer of its own): a shed request costs one comparison and one small pre-built answer,
never a route lookup, a body read or a database query. A slot is held until the application
returned, that is after the last byte of a streaming response was sent, after an error, or after
the client went away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from contextvars import ContextVar
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app_api.core.component import API_PREFIX
from app_api.core.errors import PROBLEM_JSON, ServiceUnavailable
from app_api.core.metrics import IN_FLIGHT, SHED
from app_api.core.middleware import with_security_headers

if TYPE_CHECKING:
    from fastapi import FastAPI

    from app_api.core.settings import Settings

log = logging.getLogger(__name__)

# Shed last (see the module docstring): exact paths, and path prefixes.
PRIORITY_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
PRIORITY_PREFIXES = (
    f"{API_PREFIX}/payments/notify/",
    f"{API_PREFIX}/auth/",
    f"{API_PREFIX}/mp/wechat/login",
    f"{API_PREFIX}/mp/alipay/login",
    f"{API_PREFIX}/console/login",
)
# Never shed, only counted: a provider's payment notification. It is cheap (a signature check and
# one idempotent transaction), it is what credits a resident's money, and a provider that gets a
# 503 retries only minutes later (WeChat Pay: 15 s, 15 s, 30 s, 3 min, ...), so a burst of them
# (a provider flushing its backlog after an outage) is worth serving rather than pushing back.
NEVER_SHED_PREFIXES = (f"{API_PREFIX}/payments/notify/",)
# How often the event loop's lag is measured.
LAG_PROBE_S = 0.05
# Set while a shed answer is sent: the server's access-log line for it is dropped (formatting,
# masking and writing it cost more than the answer itself; shed answers are counted in
# ``wojia_http_shed_total`` and reported by the warning below instead).
_SHEDDING: ContextVar[bool] = ContextVar("wojia_shedding", default=False)
# Development sandboxes of external systems, mounted in the api itself: they stand for systems
# outside it and are neither counted nor shed (a request calling one would otherwise wait on itself).
UNCOUNTED_PREFIX = "/sandbox/"
# At most one warning per this many seconds per process, with the count shed since the last one.
LOG_EVERY_S = 10.0


class Overloaded(ServiceUnavailable):
    """More requests in flight than this process serves at a time: come back after Retry-After."""

    code = "app.overloaded"
    title = "系统繁忙，请稍后再试"


def is_priority(path: str) -> bool:
    return path in PRIORITY_PATHS or path.startswith(PRIORITY_PREFIXES)


class Admission:
    """Admit an ordinary request while fewer than ``max_in_flight`` are in flight and the event
    loop's lag is at most ``max_lag_s`` (0: not checked), a priority one while fewer than
    ``max_in_flight + priority_reserve`` are; answer every other request 503 at once.

    The state and the decision, without an ASGI layer of its own: the api's single edge layer
    (``app_api.core.middleware.EdgeMiddleware``) consults it; :class:`LoadShedding` wraps it as a
    middleware of its own for other apps.
    """

    def __init__(
        self,
        *,
        max_in_flight: int,
        priority_reserve: int,
        retry_after_s: int,
        max_lag_s: float = 0.0,
        hsts: bool = False,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.priority_limit = max_in_flight + priority_reserve
        self.retry_after = str(retry_after_s).encode()
        self.hsts = hsts
        self.max_lag_s = max_lag_s
        self.in_flight = 0
        self.lag = 0.0
        # When the lag probe is due to wake up (monotonic; infinity while it is not sleeping).
        self._probe_due = float("inf")
        self._probe: asyncio.Task[None] | None = None
        self._shed_since_log = 0
        self._last_log = 0.0

    def refuses(self, path: str) -> tuple[bool, bool]:
        """(shed it, priority path) for a request to ``path`` arriving now."""
        if self._probe is None and self.max_lag_s > 0:
            self._probe = asyncio.get_running_loop().create_task(self._measure_lag())
        priority = is_priority(path)
        if path.startswith(NEVER_SHED_PREFIXES):
            return False, priority
        if priority:
            return self.in_flight >= self.priority_limit, True
        over = self.in_flight >= self.max_in_flight or (
            self.max_lag_s > 0
            and (self.lag > self.max_lag_s or time.monotonic() - self._probe_due > self.max_lag_s)
        )
        return over, False

    async def _measure_lag(self) -> None:
        # The smaller of the last two measurements: one long synchronous call is not a backlog
        # (while it runs nothing is admitted anyway; the overdue probe covers the time after it).
        last = 0.0
        while True:
            self._probe_due = time.monotonic() + LAG_PROBE_S
            await asyncio.sleep(LAG_PROBE_S)
            lag = time.monotonic() - self._probe_due
            self._probe_due = float("inf")
            self.lag, last = min(lag, last), lag

    def on_lifespan(self, send: Send) -> Send:
        """``send`` for the lifespan scope: stops the lag probe at shutdown."""

        async def send_wrapped(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown") and self._probe is not None:
                self._probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._probe
                self._probe = None
            await send(message)

        return send_wrapped

    async def shed(self, scope: Scope, send: Send, priority: bool) -> None:
        """Answer 503 ``app.overloaded`` at once (counted; no access-log line)."""

        SHED.labels("priority" if priority else "ordinary").inc()
        self._log_sparsely()
        path: str = scope["path"]
        rid = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value[:64]
                break
        request_id = rid.decode("latin-1") or uuid.uuid4().hex
        problem = Overloaded("当前访问人数较多，请稍后再试", retry_after=int(self.retry_after))
        body = json.dumps(
            problem.to_problem(instance=path, request_id=request_id), ensure_ascii=False
        ).encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", self.retry_after),
            (b"x-request-id", request_id.encode("latin-1")),
        ]
        token = _SHEDDING.set(True)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": with_security_headers(headers, path=path, hsts=self.hsts),
                }
            )
        finally:
            _SHEDDING.reset(token)
        await send({"type": "http.response.body", "body": body})

    def _log_sparsely(self) -> None:
        self._shed_since_log += 1
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            log.warning(
                "overloaded: shed %d request(s) since the last report "
                "(%d in flight, limit %d; event loop lag %.0f ms)",
                self._shed_since_log,
                self.in_flight,
                self.max_in_flight,
                self.lag * 1000,
            )
            self._shed_since_log = 0
            self._last_log = now


class LoadShedding(Admission):
    """:class:`Admission` as a pure ASGI middleware of its own (outermost: a shed request costs one
    comparison and one small pre-built answer, never a route lookup, a body read or a query)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        priority_reserve: int,
        retry_after_s: int,
        max_lag_s: float = 0.0,
        hsts: bool = False,
    ) -> None:
        super().__init__(
            max_in_flight=max_in_flight,
            priority_reserve=priority_reserve,
            retry_after_s=retry_after_s,
            max_lag_s=max_lag_s,
            hsts=hsts,
        )
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNCOUNTED_PREFIX):
            # lifespan, websockets and the development sandboxes pass through
            if scope["type"] == "lifespan":
                await self.app(scope, receive, self.on_lifespan(send))
            else:
                await self.app(scope, receive, send)
            return
        over, priority = self.refuses(scope["path"])
        if over:
            await self.shed(scope, send, priority)
            return
        self.in_flight += 1
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            IN_FLIGHT.dec()


def _not_shed(record: logging.LogRecord) -> bool:
    return not _SHEDDING.get()


def admission_for(settings: Settings) -> Admission | None:
    """The api's admission control (None with ``WOJIA_MAX_IN_FLIGHT=0``: off). Shed answers leave
    no line in uvicorn's access log."""
    if settings.max_in_flight == 0:
        return None
    access = logging.getLogger("uvicorn.access")
    if _not_shed not in access.filters:
        access.addFilter(_not_shed)
    return Admission(
        max_in_flight=settings.max_in_flight,
        priority_reserve=settings.in_flight_priority_reserve,
        retry_after_s=settings.shed_retry_after_s,
        max_lag_s=settings.shed_lag_s,
        hsts=settings.public_base_url.startswith("https://"),
    )


def install_load_shedding(app: FastAPI, settings: Settings) -> None:
    """Add :class:`LoadShedding` as the outermost middleware of ``app`` (call after every other
    middleware was added). ``WOJIA_MAX_IN_FLIGHT=0`` turns it off. The api itself does not use
    this: its edge layer admits requests (``admission_for``)."""
    admission = admission_for(settings)
    if admission is None:
        return
    app.add_middleware(
        LoadShedding,
        max_in_flight=admission.max_in_flight,
        priority_reserve=admission.priority_limit - admission.max_in_flight,
        retry_after_s=int(admission.retry_after),
        max_lag_s=admission.max_lag_s,
        hsts=admission.hsts,
    )
