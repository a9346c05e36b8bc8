"""Load shedding: beyond ``WOJIA_MAX_IN_FLIGHT`` requests in flight, ordinary requests get 503
``app.overloaded`` at once with Retry-After; payment notifications, health checks and logins get
through on the reserve; a slot comes back when its request ended however it ended.

The api runs for real (``wojia serve``, one worker) with a limit of 2 and a reserve of 2. A request
is kept in flight by sending its headers and holding back the end of its JSON body (the api reads
the body before answering), on a raw socket so that the test decides when it ends or goes away.
The number in flight is read where operators read it, at ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app_api.core.settings import Settings
from app_api.core.shedding import LoadShedding, install_load_shedding, is_priority
from tests.conftest import wojia_serve

LIMIT = 2
RESERVE = 2
ORDINARY_POST = "/api/v1/admin/stations"  # staff only: 401 once the body is in
BODY = json.dumps({"name": "测试服务站", "address": "亳州"}).encode()


@pytest.fixture(scope="module")
async def api(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        **os.environ,
        "WOJIA_JOBS_EMBEDDED": "true",
        "WOJIA_IDENTITY_VERIFIER": "remote",
        "WOJIA_MAX_IN_FLIGHT": str(LIMIT),
        "WOJIA_IN_FLIGHT_PRIORITY_RESERVE": str(RESERVE),
        "WOJIA_SHED_RETRY_AFTER_S": "3",
        "WOJIA_SHED_LOOP_LAG_MS": "0",  # only the count: this machine's load must not decide
    }
    async with wojia_serve(env) as client:
        yield client


class Held:
    """A request in flight: headers and the first byte of its body sent, the rest held back."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, client: httpx.AsyncClient, path: str) -> Held:
        url = client.base_url
        reader, writer = await asyncio.open_connection(url.host, url.port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n"
        )
        writer.write(head.encode() + BODY[:1])
        await writer.drain()
        return cls(reader, writer)

    async def finish(self) -> int:
        """Send the rest of the body; the status of the answer."""
        self.writer.write(BODY[1:])
        await self.writer.drain()
        status_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 10)
        self.writer.close()
        return int(status_line.split()[1])

    async def disconnect(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def in_flight(client: httpx.AsyncClient) -> float:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    m = re.search(r"^wojia_http_in_flight (\S+)$", r.text, re.M)
    assert m, r.text
    return float(m.group(1))


async def shed_count(client: httpx.AsyncClient, kind: str) -> float:
    r = await client.get("/metrics")
    m = re.search(rf'^wojia_http_shed_total{{kind="{kind}"}} (\S+)$', r.text, re.M)
    return float(m.group(1)) if m else 0.0


async def wait_in_flight(client: httpx.AsyncClient, expected: int) -> None:
    """Until /metrics shows ``expected`` requests in flight besides the /metrics request itself."""
    seen = -1.0
    for _ in range(100):
        seen = await in_flight(client) - 1
        if seen == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"{seen:g} requests in flight, expected {expected}")


async def hold(client: httpx.AsyncClient, path: str, n: int, already: int = 0) -> list[Held]:
    held = [await Held.open(client, path) for _ in range(n)]
    await wait_in_flight(client, already + n)
    return held


def assert_shed(r: httpx.Response, seconds: float) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "3"
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "app.overloaded"
    assert body["title"] == "系统繁忙，请稍后再试"
    assert body["status"] == 503 and body["retry_after"] == 3
    assert body["request_id"] == r.headers["x-request-id"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert seconds < 1.0, f"shed after {seconds:.2f} s"


async def timed_get(client: httpx.AsyncClient, path: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = await client.get(path)
    return r, time.perf_counter() - start


async def test_beyond_the_limit_ordinary_requests_get_503_at_once(api: httpx.AsyncClient) -> None:
    before = await shed_count(api, "ordinary")
    held = await hold(api, ORDINARY_POST, LIMIT)
    try:
        for path in ("/api/v1/home", "/api/v1/columns/notices/items", "/nowhere"):
            r, seconds = await timed_get(api, path)
            assert_shed(r, seconds)
            assert r.json()["instance"] == path
        assert await shed_count(api, "ordinary") == before + 3
    finally:
        statuses = [await h.finish() for h in held]
    # The held requests themselves were served to the end (staff only: 401 without a token).
    assert statuses == [401] * LIMIT
    await wait_in_flight(api, 0)
    r = await api.get("/api/v1/columns/notices/items")
    assert r.status_code != 503, r.text


async def test_notifications_health_and_logins_get_through_while_ordinary_requests_are_shed(
    api: httpx.AsyncClient,
) -> None:
    held = await hold(api, ORDINARY_POST, LIMIT)
    try:
        r, seconds = await timed_get(api, "/api/v1/home")
        assert_shed(r, seconds)
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/readyz")).status_code == 200
        # A provider's notification is read and judged by its handler (this one is no valid
        # notification), not shed.
        r = await api.post("/api/v1/payments/notify/wechat_v3", content=b'{"id": "x"}')
        assert r.status_code not in {503, 404}, r.text
        assert r.headers.get("content-type", "").startswith("application/")
        r = await api.post("/api/v1/auth/login", json={"phone": "13800000001", "code": "000000"})
        assert 400 <= r.status_code < 500, r.text
        r = await api.post("/api/v1/auth/sms-codes", json={"phone": "13800000002"})
        assert r.status_code == 202, r.text
    finally:
        for h in held:
            await h.finish()
    await wait_in_flight(api, 0)


async def test_priority_requests_are_shed_too_once_the_reserve_is_used(api: httpx.AsyncClient) -> None:
    held = await hold(api, ORDINARY_POST, LIMIT)
    # /metrics is a priority path too: count up to one slot short, then take the last one.
    held += await hold(api, "/api/v1/auth/login", RESERVE - 1, already=LIMIT)
    held.append(await Held.open(api, "/api/v1/auth/login"))
    try:
        for _ in range(100):
            r, seconds = await timed_get(api, "/healthz")
            if r.status_code == 503:
                break
            await asyncio.sleep(0.05)
        assert_shed(r, seconds)
        # A provider's payment notification is never shed: it is read and judged by its handler.
        r = await api.post("/api/v1/payments/notify/wechat_v3", content=b'{"id": "x"}')
        assert r.status_code not in {503, 404}, r.text
    finally:
        for h in held:
            await h.finish()
    await wait_in_flight(api, 0)
    assert (await api.get("/healthz")).status_code == 200


async def test_a_slot_comes_back_when_the_client_goes_away(api: httpx.AsyncClient) -> None:
    held = await hold(api, ORDINARY_POST, LIMIT)
    r, seconds = await timed_get(api, "/api/v1/home")
    assert_shed(r, seconds)
    for h in held:
        await h.disconnect()
    await wait_in_flight(api, 0)
    r = await api.get("/api/v1/columns/notices/items")
    assert r.status_code != 503, r.text


async def test_a_slot_comes_back_after_error_answers(api: httpx.AsyncClient) -> None:
    # 404, 405, 422, 401 and 413 (the body-size limit raises inside the middleware stack).
    answers = [
        await api.get("/api/v1/nowhere"),
        await api.delete("/healthz"),
        await api.post("/api/v1/auth/login", json={"phone": 1}),
        await api.get("/api/v1/me"),
        await api.post("/api/v1/auth/login", content=b"x" * (2 * 1024 * 1024)),
    ]
    assert [r.status_code for r in answers] == [404, 405, 422, 401, 413]
    await wait_in_flight(api, 0)
    held = await hold(api, ORDINARY_POST, LIMIT)  # all the slots are there again
    for h in held:
        await h.finish()
    await wait_in_flight(api, 0)


# The contract of the middleware itself, on responses the api has no route for yet.


def _http(path: str = "/api/v1/export") -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}


async def _noop_receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def test_a_streaming_response_holds_its_slot_until_its_last_chunk() -> None:
    sent_first = asyncio.Event()
    go_on = asyncio.Event()

    async def streaming(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        sent_first.set()
        await go_on.wait()
        await send({"type": "http.response.body", "body": b"b", "more_body": False})

    shedding = LoadShedding(streaming, max_in_flight=1, priority_reserve=0, retry_after_s=1)
    messages: list[dict[str, Any]] = []

    async def collect(message: Any) -> None:
        messages.append(message)

    first = asyncio.create_task(shedding(_http(), _noop_receive, collect))
    await sent_first.wait()
    assert shedding.in_flight == 1
    second: list[dict[str, Any]] = []

    async def collect_second(message: Any) -> None:
        second.append(message)

    await shedding(_http(), _noop_receive, collect_second)
    assert second[0]["status"] == 503
    go_on.set()
    await first
    assert shedding.in_flight == 0
    assert [m.get("body") for m in messages[1:]] == [b"a", b"b"]


async def test_a_slot_comes_back_when_the_application_raises() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def discard(message: Any) -> None:
        pass

    shedding = LoadShedding(broken, max_in_flight=1, priority_reserve=0, retry_after_s=1)
    with pytest.raises(RuntimeError):
        await shedding(_http(), _noop_receive, discard)
    assert shedding.in_flight == 0


async def test_lifespan_websockets_and_sandboxes_pass_through_uncounted() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def discard(message: Any) -> None:
        pass

    shedding = LoadShedding(inner, max_in_flight=0, priority_reserve=0, retry_after_s=1)
    await shedding({"type": "lifespan"}, _noop_receive, discard)
    await shedding({"type": "websocket", "path": "/ws", "headers": []}, _noop_receive, discard)
    await shedding(_http("/sandbox/payments/pay"), _noop_receive, discard)  # a development sandbox
    assert seen == ["lifespan", "websocket", "http"] and shedding.in_flight == 0


async def test_shed_answers_leave_no_access_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn logs its access line inside ``send``; a shed answer's line is dropped (they are counted
    instead), every other answer's line is kept."""
    install_load_shedding(FastAPI(), Settings())
    access = logging.getLogger("uvicorn.access")

    async def served(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send_and_log(message: Any) -> None:
        if message["type"] == "http.response.start":
            access.info('"GET %s" %d', "/x", message["status"])

    shedding = LoadShedding(served, max_in_flight=1, priority_reserve=0, retry_after_s=1)
    with caplog.at_level(logging.INFO, logger="uvicorn.access"):
        await shedding(_http(), _noop_receive, send_and_log)
        shedding.in_flight = 1  # as if another request were being served
        await shedding(_http(), _noop_receive, send_and_log)
        shedding.in_flight = 0
    lines = [r.getMessage() for r in caplog.records if r.name == "uvicorn.access"]
    assert lines == ['"GET /x" 200']


def test_priority_paths() -> None:
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/payments/notify/alipay",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/mp/wechat/login",
        "/api/v1/console/login",
    ):
        assert is_priority(path), path
    for path in ("/api/v1/home", "/api/v1/payments/orders", "/healthz/x", "/api/v1/columns/auth/"):
        assert not is_priority(path), path


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_in_flight", -1), ("in_flight_priority_reserve", -1), ("shed_retry_after_s", 0)],
)
def test_settings_out_of_bounds_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(**{field: value})
    assert field in str(err.value)


def test_the_event_loop_lag_is_checked_outside_development_only() -> None:
    assert Settings(environment="test").shed_lag_s == 0
    assert Settings(environment="development", shed_loop_lag_ms=300).shed_lag_s == 0.3


async def test_a_request_read_while_the_loop_is_backlogged_is_shed_before_the_lag_is_measured() -> None:
    """The loop's lag counts the moment it builds up: a request read after the loop was held up
    longer than the limit is shed (priority ones pass), before the lag probe has even woken."""

    async def ok(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    shedding = LoadShedding(ok, max_in_flight=4, priority_reserve=2, retry_after_s=1, max_lag_s=0.1)

    async def status(path: str) -> int:
        messages: list[dict[str, Any]] = []

        async def collect(message: Any) -> None:
            messages.append(message)

        await shedding(_http(path), _noop_receive, collect)
        return int(messages[0]["status"])

    try:
        assert await status("/api/v1/export") == 200  # starts the probe
        await asyncio.sleep(0.01)  # the probe is asleep now
        time.sleep(0.3)  # the loop held up, as by a burst it cannot keep up with
        assert await status("/api/v1/export") == 503
        assert await status("/healthz") == 200
        await asyncio.sleep(0.1)  # the loop is free again: the probe wakes and so does admission
        assert await status("/api/v1/export") == 200
    finally:
        assert shedding._probe is not None
        shedding._probe.cancel()
