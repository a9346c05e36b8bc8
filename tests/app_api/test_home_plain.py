"""GET /api/v1/home served by its plain ASGI handler (app_api.wiring.route_index): the same answers,
checks and errors as FastAPI's dispatch of the endpoint, for every kind of caller."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import httpx
import jwt
import pytest

from app_api.core.settings import get_settings
from app_api.wiring.route_index import RouteIndex
from tests.conftest import LoginFn

KEY = ("GET", "/api/v1/home", "")
RID = {"X-Request-Id": "home-plain-test"}


def _seen(r: httpx.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    return r.status_code, r.content, [(k, v) for k, v in r.headers.items() if k != "date"]


async def _both(client: httpx.AsyncClient, index: RouteIndex, headers: dict[str, str]) -> httpx.Response:
    """The answer of FastAPI's dispatch and of the plain handler, which must be the same."""
    index.plain.pop(KEY, None)
    by_fastapi = await client.get("/api/v1/home", headers={**RID, **headers})
    assert KEY in index.plain  # learned from FastAPI's dispatch, used by the next request
    by_plain = await client.get("/api/v1/home", headers={**RID, **headers})
    assert _seen(by_plain) == _seen(by_fastapi)
    return by_plain


async def test_home_answers_as_fastapi_would_for_every_caller(
    client: httpx.AsyncClient, app: Any, login: LoginFn
) -> None:
    index = app.router.middleware_stack
    assert isinstance(index, RouteIndex)
    for _ in range(2):  # the first request teaches the index the route
        await client.get("/api/v1/home")

    anonymous = await _both(client, index, {})
    assert anonymous.status_code == 200 and anonymous.headers["content-type"] == "application/json"
    assert anonymous.json()["categories"]
    assert anonymous.headers["x-request-id"] == "home-plain-test"
    assert anonymous.headers["cache-control"] == "no-store"
    # Other schemes and an empty bearer are anonymous, as HTTPBearer(auto_error=False) reads them.
    for other in ("Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer"):
        assert (await _both(client, index, {"Authorization": other})).content == anonymous.content

    resident = await login()
    assert (await _both(client, index, resident)).status_code == 200
    lower = {"Authorization": resident["Authorization"].replace("Bearer", "bearer", 1)}
    assert (await _both(client, index, lower)).status_code == 200

    forged = jwt.encode(
        {"sub": "x", "fam": "y", "iss": "wojia", "exp": 9999999999}, "not-the-key", algorithm="HS256"
    )
    r = await _both(client, index, {"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["code"] == "auth.token_invalid"
    assert r.json()["request_id"] == "home-plain-test"
    expired = jwt.encode(
        {"sub": "x", "fam": "y", "iss": "wojia", "exp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)},
        get_settings().secret_key.get_secret_value(),
        algorithm="HS256",
    )
    r = await _both(client, index, {"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["code"] == "auth.token_expired"

    # A logged-out token is refused at once on the plain path too.
    assert (await client.post("/api/v1/auth/logout", headers=resident)).status_code == 204
    r = await client.get("/api/v1/home", headers=resident)
    assert KEY in index.plain and r.status_code == 401


async def test_dependency_overrides_send_home_through_fastapi(client: httpx.AsyncClient, app: Any) -> None:
    from app_api.platform.home.router import registry

    index = app.router.middleware_stack
    for _ in range(2):
        await client.get("/api/v1/home")
    assert KEY in index.plain

    class Empty:
        async def home_views(self) -> list[Any]:
            return []

    from app_api.platform.home import router as home_router

    app.dependency_overrides[registry] = Empty
    try:
        # The override is honoured (FastAPI resolves it): the plain handler would not see it.
        home_router._home_local._data.clear()
        r = await client.get("/api/v1/home")
        assert r.status_code == 200 and r.json()["categories"] == []
    finally:
        app.dependency_overrides.clear()
        home_router._home_local._data.clear()
    r = await client.get("/api/v1/home")
    assert r.status_code == 200 and r.json()["categories"]


async def test_a_warm_home_never_touches_the_database(client: httpx.AsyncClient, login: LoginFn) -> None:
    from sqlalchemy import event

    from app_api.core.db import get_engine

    resident = await login()
    for _ in range(3):  # warm: the index, the principal, the columns, the screen
        assert (await client.get("/api/v1/home", headers=resident)).status_code == 200
        assert (await client.get("/api/v1/home")).status_code == 200
    pool = get_engine().sync_engine.pool
    checkouts: list[object] = []

    def on_checkout(*args: object) -> None:
        checkouts.append(args)

    event.listen(pool, "checkout", on_checkout)
    try:
        for _ in range(5):
            assert (await client.get("/api/v1/home", headers=resident)).status_code == 200
            assert (await client.get("/api/v1/home")).status_code == 200
        by_home = len(checkouts)
        # The same listener sees the database when a route uses it (the check can fail).
        assert (await client.get("/api/v1/me", headers=resident)).status_code == 200
    finally:
        event.remove(pool, "checkout", on_checkout)
    assert by_home == 0, f"a warm GET /home checked out {by_home} database connection(s)"
    assert len(checkouts) >= 1


def test_fastapi_telemetry_is_off_unless_the_process_asks_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from app_api.wiring.app import telemetry_config

    for name in [n for n in os.environ if n.startswith("OTEL_") or n == "FASTAPI_OTEL_AUTO_CONFIGURE"]:
        monkeypatch.delenv(name)
    assert telemetry_config() == {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    monkeypatch.setenv("OTEL_SERVICE_NAME", "wojia")
    assert telemetry_config() is None
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    assert telemetry_config() is None
