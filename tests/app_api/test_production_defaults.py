"""Production defaults: what a deployment answers with ``WOJIA_ENVIRONMENT=production``.

The api is started for real (``wojia serve`` in a subprocess, with non-development secrets, on a
free loopback port, against the test database) and looked at from outside: security headers,
no ``server`` banner, no ``/docs`` or ``/openapi.json``, ``/metrics`` behind its token; without a
metrics token it refuses to start. Development and test keep their docs, and get the headers too.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import free_port, wojia_serve

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "prom-" + secrets.token_hex(16)
PUBLIC = "https://wojia.example.cn"


def production_env(**extra: str) -> dict[str, str]:
    """The test process's environment (its database and Redis) turned into a production one."""
    env = {k: v for k, v in os.environ.items() if k not in {"WOJIA_JOBS_EMBEDDED", "WOJIA_METRICS_TOKEN"}}
    env.update(
        WOJIA_ENVIRONMENT="production",
        WOJIA_PUBLIC_BASE_URL=PUBLIC,
        WOJIA_SECRET_KEY="prod-" + secrets.token_hex(24),
        WOJIA_DATA_KEYS="k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        WOJIA_LOOKUP_KEY="prod-" + secrets.token_hex(24),
        WOJIA_LOG_JSON="false",
        # Every package refuses its development secrets outside development.
        WOJIA_PAYMENTS_MODE="live",
        WOJIA_PAYMENTS_WECHAT_V2__APPID="wx0000000000000000",
        WOJIA_PAYMENTS_WECHAT_V2__MCH_ID="1900000000",
        WOJIA_PAYMENTS_WECHAT_V2__API_KEY="prod-" + secrets.token_hex(16),
        WOJIA_IDENTITY_REAL_PERSON_SECRET="prod-" + secrets.token_hex(16),
        WOJIA_MP_WECHAT_APP_SECRET="prod-" + secrets.token_hex(16),
        WOJIA_BOT_ACTION_TOKEN="prod-" + secrets.token_hex(16),
        WOJIA_BOT_SENDER_KEY="prod-" + secrets.token_hex(16),
        WOJIA_COLUMN_GOV_SERVICES_POSTAL_SECRET="prod-" + secrets.token_hex(16),
        WOJIA_COLUMN_GOV_SERVICES_S3_SECRET_KEY="prod-" + secrets.token_hex(16),
        WOJIA_COLUMN_PROVIDENT_FUND_SECRET="prod-" + secrets.token_hex(16),
        # Outside development every adapter in use names its endpoint (empty means the sandbox).
        WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL="https://ems.example.cn/open",
        WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL="https://gjj.example.cn/api",
    )
    env.update(extra)
    return env


def serve_command(port: int) -> list[str]:
    # The database was migrated by the test session; ``wojia serve`` is the command deployments run.
    return [sys.executable, "-m", "app_api.wiring.cli", "serve", "--port", str(port), "--no-migrate"]


@pytest.fixture(scope="module")
async def production(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with wojia_serve(production_env(WOJIA_METRICS_TOKEN=METRICS_TOKEN)) as client:
        yield client


SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "strict-transport-security": "max-age=31536000",
}


def assert_security_headers(r: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert r.headers.get(name) == value, (name, r.headers)
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert "server" not in r.headers  # no "uvicorn" banner


async def test_production_answers_carry_security_headers_and_no_server_banner(
    production: httpx.AsyncClient,
) -> None:
    r = await production.get("/api/v1/stations")
    assert r.status_code == 200, r.text
    assert_security_headers(r)
    assert r.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert r.headers["cache-control"] == "no-store"
    # Errors too, including those answered before any route (control characters, unknown paths).
    for path in ("/api/v1/stations?city=%00", "/api/v1/no-such-thing", "/healthz"):
        r = await production.get(path)
        assert_security_headers(r)


async def test_the_staff_console_login_page_still_works_under_its_own_policy(
    production: httpx.AsyncClient,
) -> None:
    r = await production.get("/api/v1/console/login")
    assert r.status_code == 200 and "<form" in r.text, r.text
    assert_security_headers(r)
    csp = r.headers["content-security-policy"]
    # Its inline <style> and same-origin forms are allowed, nothing else.
    assert "style-src 'unsafe-inline'" in csp and "form-action 'self'" in csp and "default-src 'none'" in csp
    assert r.headers["cache-control"] == "no-store"


async def test_production_serves_no_api_documentation(production: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        r = await production.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "app.not_found"


async def test_production_metrics_need_the_token(production: httpx.AsyncClient) -> None:
    r = await production.get("/metrics")
    assert r.status_code == 401 and r.json()["code"] == "ops.metrics_token_required"
    r = await production.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "wojia" in r.text


async def test_production_workers_keep_their_start_up_heap_out_of_full_collections(
    production: httpx.AsyncClient,
) -> None:
    """A full garbage collection of a started api process walked ~280,000 objects, ~200 ms with
    the event loop stopped (app_api.core.heap). Once started, the process has moved them to the
    permanent generation; its metrics say how many (the smallest among its live processes)."""
    r = await production.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    [line] = [x for x in r.text.splitlines() if x.startswith("wojia_gc_frozen_objects")]
    assert float(line.split()[-1]) > 100_000, line


async def test_wojia_serve_refuses_to_start_without_a_metrics_token() -> None:
    for token in (None, "short"):
        env = production_env() if token is None else production_env(WOJIA_METRICS_TOKEN=token)
        proc = await asyncio.create_subprocess_exec(
            *serve_command(free_port()),
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 2, (out, err)
        assert b"refusing to start: WOJIA_METRICS_TOKEN must be set" in err, err


# ---------------------------------------------------------------- the factory itself


def production_settings(**over: Any) -> Any:
    from app_api.core.settings import Settings

    fields: dict[str, Any] = {
        "environment": "production",
        "public_base_url": PUBLIC,
        "secret_key": "prod-" + secrets.token_hex(24),
        "data_keys": "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "lookup_key": "prod-" + secrets.token_hex(24),
        "metrics_token": METRICS_TOKEN,
        "log_json": False,
    }
    fields.update(over)
    return Settings(_env_file=None, **fields)


def test_create_app_refuses_production_settings_without_a_metrics_token() -> None:
    from app_api.core.settings import StartupRefused
    from app_api.wiring.app import create_app

    with pytest.raises(StartupRefused, match="WOJIA_METRICS_TOKEN must be set"):
        create_app(production_settings(metrics_token=None))
    with pytest.raises(StartupRefused, match="WOJIA_CORS_ORIGINS may not be '\\*'"):
        create_app(production_settings(cors_origins="*"))
    with pytest.raises(ValueError, match="is not an origin"):
        production_settings(cors_origins="https://h5.example.cn/app")
    # Development stays as it was: no token needed, documentation on.
    from app_api.core.settings import Settings

    dev = Settings(_env_file=None, environment="development")
    assert dev.serving_problems() == [] and dev.serve_docs
    assert production_settings(docs_enabled=True).serve_docs


async def test_cors_is_closed_unless_origins_are_configured(client: httpx.AsyncClient) -> None:
    preflight = {"origin": "https://h5.example.cn", "access-control-request-method": "POST"}
    r = await client.get("/api/v1/stations", headers={"origin": "https://h5.example.cn"})
    assert "access-control-allow-origin" not in r.headers
    r = await client.options("/api/v1/auth/sms-codes", headers=preflight)
    assert "access-control-allow-origin" not in r.headers

    from app_api.wiring.app import create_app

    app = create_app(production_settings(cors_origins="https://h5.example.cn, https://m.example.cn"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.options("/api/v1/auth/sms-codes", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://h5.example.cn"
        assert "authorization" in r.headers["access-control-allow-headers"]
        assert r.headers["x-content-type-options"] == "nosniff"
        r = await c.options("/api/v1/auth/sms-codes", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


# ---------------------------------------------------------------- development and test


async def test_the_test_environment_keeps_its_docs_and_gets_the_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and r.json()["paths"]
    r = await client.get("/docs")
    assert r.status_code == 200 and r.headers["content-security-policy"] == "frame-ancestors 'none'"
    r = await client.get("/api/v1/stations")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in r.headers  # plain-http development address


async def test_an_unexpected_error_answer_gets_the_headers_too() -> None:
    from app_api.wiring.app import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        r = await c.get("/api/v1/boom")
    assert r.status_code == 500 and r.json()["code"] == "app.internal"
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["cache-control"] == "no-store"


def test_wojia_serve_asks_uvicorn_for_no_server_header() -> None:
    from app_api.wiring.cli import uvicorn_options

    options = uvicorn_options(host="127.0.0.1", port=8000, workers=2)
    assert options["server_header"] is False and options["proxy_headers"] is True
