"""Every route declares who may call it; role and level checks answer with clear codes."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from app_api.platform.access_walk import access_kinds, iter_api_routes
from tests.conftest import LoginFn


def test_every_route_declares_access(app: object) -> None:
    undeclared = []
    checked = 0
    for path, methods, dependant in iter_api_routes(app):
        checked += 1
        if not access_kinds(dependant):
            undeclared.append(f"{sorted(methods)} {path}")
    assert checked > 10
    assert undeclared == [], f"routes without an access declaration: {undeclared}"


def test_walk_detects_a_route_without_declaration() -> None:
    from fastapi import FastAPI

    probe = FastAPI()

    @probe.get("/naked")
    async def naked() -> dict[str, str]:
        return {}

    route = next(r for r in probe.routes if isinstance(r, APIRoute))
    assert access_kinds(route.dependant) == set()


async def test_role_required(client: httpx.AsyncClient, login: LoginFn) -> None:
    resident = await login()
    r = await client.get("/api/v1/admin/columns", headers=resident)
    assert r.status_code == 403
    assert r.json()["code"] == "auth.forbidden" and "管理员" in r.json()["detail"]
    admin = await login(roles=["admin"])
    assert (await client.get("/api/v1/admin/columns", headers=admin)).status_code == 200


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "app.not_found" and r.json()["request_id"]
    r = await client.delete("/api/v1/home")
    assert r.status_code == 405 and r.json()["code"] == "app.method_not_allowed"


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/nope", headers={"x-request-id": "abc123"})
    assert r.headers["x-request-id"] == "abc123" and r.json()["request_id"] == "abc123"


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "redis": "ok"}
    m = await client.get("/metrics")
    assert m.status_code == 200 and "wojia_http_requests_total" in m.text


async def test_metrics_token_keeps_metrics_to_the_scraper(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import SecretStr

    from app_api.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "metrics_token", SecretStr("scrape-" + "x" * 24))
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "scrape-" + "y" * 24}):
        r = await client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "ops.metrics_token_required", headers
        assert "wojia_http_requests_total" not in r.text
    ok = await client.get("/metrics", headers={"authorization": "Bearer scrape-" + "x" * 24})
    assert ok.status_code == 200 and "wojia_http_requests_total" in ok.text


async def test_logs_mask_personal_numbers(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from app_api.core.logging import MaskingFilter

    rec = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "login %s id %s", ("13912345678", "34160219900101123X"), None
    )
    MaskingFilter().filter(rec)
    assert rec.getMessage() == "login 139****5678 id 341***********123X"
