"""The request hot path (issue 19): the route index in front of FastAPI's router, the single edge
middleware layer, and remembered token verifications, each behaving as what they replace."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI

from app_api.core.middleware import EdgeMiddleware
from app_api.core.shedding import Admission
from app_api.platform.accounts.errors import TokenExpired, TokenInvalid
from app_api.wiring import route_index
from app_api.wiring.route_index import install_route_index


def _small_app() -> tuple[FastAPI, APIRouter]:
    first, second = APIRouter(), APIRouter()

    @first.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"by": "first", "item": item_id}

    @second.get("/items/special")
    async def special() -> dict[str, str]:
        return {"by": "second"}  # shadowed: the first router's pattern comes first

    @second.get("/second-only")
    async def second_only() -> dict[str, str]:
        return {"by": "second"}

    @second.post("/post-only")
    async def post_only() -> dict[str, str]:
        return {"by": "second"}

    app = FastAPI()
    app.include_router(first, prefix="/api")
    app.include_router(second, prefix="/api")
    return app, first


async def test_the_route_index_picks_what_fastapi_picks_and_follows_route_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, first = _small_app()
    index = install_route_index(app)
    assert index is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for _ in range(3):  # first request learns the route, the next ones use the index
            assert (await c.get("/api/items/special")).json() == {"by": "first", "item": "special"}
            assert (await c.get("/api/second-only")).json() == {"by": "second"}
            assert (await c.get("/api/post-only")).status_code == 405  # partial match: never indexed
            assert (await c.get("/api/nowhere")).status_code == 404
        assert ("GET", "/api/second-only", "") in index.entries
        assert ("GET", "/api/post-only", "") not in index.entries

        # A router included later is seen at once (the top level's routes changed).
        late = APIRouter()

        @late.get("/late")
        async def late_route() -> dict[str, str]:
            return {"by": "late"}

        app.include_router(late, prefix="/api")
        assert (await c.get("/api/late")).json() == {"by": "late"}

        # A route added to an earlier included router that now comes first for an indexed path:
        # FastAPI's loop would pick it, and so does the index once it notices the change.
        @first.get("/second-only")
        async def now_first() -> dict[str, str]:
            return {"by": "first"}

        monkeypatch.setattr(route_index, "VERSION_CHECK_S", 0.0)
        assert (await c.get("/api/second-only")).json() == {"by": "first"}


async def test_the_api_serves_its_hot_paths_through_the_index(client: httpx.AsyncClient, app: Any) -> None:
    for _ in range(2):
        r = await client.get("/healthz")
        assert r.status_code == 200
    index = app.router.middleware_stack
    assert isinstance(index, route_index.RouteIndex)
    assert ("GET", "/healthz", "") in index.entries


async def test_an_oversized_body_is_413_with_cors_security_headers_and_request_id() -> None:
    from app_api.wiring.app import create_app
    from tests.app_api.test_production_defaults import production_settings

    app = create_app(production_settings(cors_origins="https://h5.example.cn"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post(
            "/api/v1/auth/sms-codes",
            content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={
                "content-type": "application/json",
                "origin": "https://h5.example.cn",
                "x-request-id": "r413",
            },
        )
    assert r.status_code == 413 and r.json()["code"] == "app.payload_too_large"
    assert r.json()["request_id"] == "r413" and r.headers["x-request-id"] == "r413"
    # A browser page on the allowed origin can read the answer (it could before the layers merged).
    assert r.headers["access-control-allow-origin"] == "https://h5.example.cn"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert r.headers["cache-control"] == "no-store"


async def test_the_edge_layer_sheds_with_headers_and_gives_the_slot_back() -> None:
    go_on = asyncio.Event()
    started = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await go_on.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    admission = Admission(max_in_flight=1, priority_reserve=0, retry_after_s=3)
    edge = EdgeMiddleware(slow, max_body=1024, max_upload=1024, admission=admission)

    def scope(path: str) -> dict[str, Any]:
        return {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []

    async def into(box: list[dict[str, Any]]) -> Any:
        async def send(message: Any) -> None:
            box.append(message)

        return send

    task = asyncio.create_task(edge(scope("/api/v1/home"), receive, await into(first)))
    await started.wait()
    assert admission.in_flight == 1
    await edge(scope("/api/v1/home"), receive, await into(second))
    headers = dict(second[0]["headers"])
    assert second[0]["status"] == 503 and headers[b"retry-after"] == b"3"
    assert headers[b"x-content-type-options"] == b"nosniff" and len(headers[b"x-request-id"]) == 32
    go_on.set()
    await task
    assert admission.in_flight == 0
    served = dict(first[0]["headers"])
    assert first[0]["status"] == 200 and served[b"cache-control"] == b"no-store"
    assert len(served[b"x-request-id"]) == 32


def _token(secret: str, exp: float) -> str:
    from app_api.platform.accounts.tokens import ALGORITHM, ISSUER

    claims = {"sub": "acct-1", "fam": "fam-1", "iss": ISSUER, "exp": int(exp), "iat": int(time.time())}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def test_a_remembered_token_still_expires_and_dies_with_a_new_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from app_api.core.settings import get_settings
    from app_api.platform import access
    from app_api.platform.accounts import tokens

    secret = get_settings().secret_key.get_secret_value()
    exp = int(time.time()) + 2
    token = _token(secret, exp)
    assert access.verify_access(token).account_id == "acct-1"
    assert token in access._VERIFIED
    assert access.verify_access(token).family_id == "fam-1"  # from memory
    time.sleep(exp - time.time() + 0.05)
    with pytest.raises(TokenExpired):
        access.verify_access(token)

    token = _token(secret, time.time() + 600)
    assert access.verify_access(token).account_id == "acct-1"
    other = get_settings().model_copy(
        update={"secret_key": type(get_settings().secret_key)("rotated-" + secret)}
    )
    monkeypatch.setattr(access, "get_settings", lambda: other)
    monkeypatch.setattr(tokens, "get_settings", lambda: other)
    with pytest.raises(TokenInvalid):
        access.verify_access(token)
