"""A lighter api process (issue 19): heavy libraries load where they are used, not at start-up.

A fresh interpreter imports ``app_api.wiring.main`` (what uvicorn imports in every api worker) and
reports what is in ``sys.modules``: none of the libraries below may be there. A top-level import
of one of them anywhere on the api's import path makes this fail; move it into the function that
uses it (or build the object on first use), as the modules named in each entry do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

# package -> where it is (lazily) used; the message of a failure.
DEFERRED = {
    "numpy": "face checks (identity.face), fakeredis's vector sets (app_api.core.redis)",
    "polars": "reconciliation (payments.reconciliation)",
    "pypinyin": "search and the bot's pinyin rescue (columns.gov_services.search, bot.pinyin)",
    "cv2": "face checks (identity.face)",
    "dlib": "face checks (identity.face)",
    "face_recognition": "face checks (identity.face)",
    "PIL": "face checks (identity.face)",
    "alipay": "Alipay calls (payments.providers.alipay, miniprogram_bridge.alipay)",
    "wechatpy": "WeChat Pay v2 calls (payments.providers.wechat_v2: the client is built on first use)",
    "wechatpayv3": "WeChat Pay v3 calls (payments.providers.wechat_v3: the client is built on first use)",
    "requests": "the WeChat SDKs above",
    "jinja2": "HTML pages (app_api.core.templates.LazyEnvironment / LazyTemplate)",
    "croniter": "schedules (app_api.core.jobs.schedules)",
    "fakeredis": "the in-process Redis stand-in, on the first Redis use (app_api.core.redis)",
    "rich": "httpx's command-line client (app_api/__init__.py imports httpx without it)",
    "pygments": "httpx's command-line client (app_api/__init__.py imports httpx without it)",
    "aiohttp": "taskiq's admin middleware, unused (app_api.core.jobs.broker defers it in taskiq.middlewares)",
    "rapidfuzz": "search, on the first search (columns.gov_services.search)",
    "websockets": "nowhere: the api serves no WebSocket (wojia serve passes ws='none' to uvicorn)",
    "xmltodict": "the WeChat Pay v2 provider and sandbox (payments.providers.wechat_v2, payments.sandbox)",
    "joserfc": "open-platform tokens, on the first one (app_api.platform.openplatform.oidc, keys)",
}

# Modules (full names) of the development sandboxes built on their first request
# (app_api.wiring.app.LazySandbox): the payments sandboxes with their providers, the columns' own.
DEFERRED_MODULES = {
    "payments.sandbox": "the payments sandboxes (payments.component: Sandbox(..., lazy=True))",
    "payments.providers.wechat_v2": "the payments sandboxes, or the first payment",
    "payments.providers.wechat_v3": "the payments sandboxes, or the first payment",
    "payments.providers.alipay": "the payments sandboxes, or the first payment",
    "columns.utilities.sandbox": "the column's dev sandbox (column.dev_sandbox)",
    "columns.gov_services.sandbox": "the column's dev sandbox (column.dev_sandbox)",
    "columns.provident_fund.sandbox": "the column's dev sandbox (column.dev_sandbox)",
}

_PROBE = """
import json, sys
import app_api.wiring.main
print(json.dumps(sorted(sys.modules)))
"""

# taskiq.middlewares as taskiq's own __init__ makes it, and as app_api.core.jobs.broker serves it.
_MIDDLEWARES = """
import json, sys
if OURS:
    import app_api.core.jobs.broker
import taskiq.middlewares as m
before = "aiohttp" in sys.modules
names = {n: getattr(m, n).__module__ for n in m.__all__}
from taskiq.middlewares import TaskiqAdminMiddleware
print(json.dumps({"all": list(m.__all__), "names": names, "path": list(m.__path__),
                  "aiohttp_before": before, "aiohttp_after": "aiohttp" in sys.modules}))
"""

_UVICORN = """
import json, sys
import uvicorn
from app_api.wiring.cli import uvicorn_options

async def app(scope, receive, send):
    pass

config = uvicorn.Config(app, **uvicorn_options(host="127.0.0.1", port=8000, workers=1))
config.load()
print(json.dumps({"ws": config.ws_protocol_class is None, "websockets": "websockets" in sys.modules}))
"""

_STAND_IN = """
import asyncio, json, sys
from app_api.core.redis import get_redis

async def main():
    r = await get_redis()
    await r.set(b"k", b"v")
    assert await r.get(b"k") == b"v"

asyncio.run(main())
import httpx
assert "httpx._main" not in sys.modules
cli = __import__("httpx._main", fromlist=["main"]).main  # the command-line client, when asked for
print(json.dumps({"numpy": "numpy" in sys.modules, "fakeredis": "fakeredis" in sys.modules,
                  "cli": type(cli).__name__}))
"""


def _run(code: str, tmp: str) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WOJIA_VAR_DIR": tmp,
        "WOJIA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/footprint.db",
        "WOJIA_REDIS_URL": "memory://",
        "WOJIA_LOG_JSON": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_api_import_leaves_heavy_libraries_unloaded() -> None:
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp:
        modules = set(json.loads(_run(_PROBE, tmp)))
    loaded = {m.split(".")[0] for m in modules}
    # The probe sees what it should: the api's own stack is there, the development sandboxes mounted.
    assert {"app_api", "fastapi", "sqlalchemy", "httpx", "taskiq"} <= loaded
    assert {"payments.registry", "app_api.platform.accounts.sandbox"} <= modules
    found = {name: where for name, where in DEFERRED.items() if name in loaded}
    found |= {name: where for name, where in DEFERRED_MODULES.items() if name in modules}
    assert not found, f"imported at start-up, expected only on first use: {found}"


def test_taskiq_middlewares_as_taskiq_has_them_with_aiohttp_on_first_use() -> None:
    """app_api.core.jobs.broker serves taskiq.middlewares itself (the admin middleware, and with it
    aiohttp, on first access): the same names from the same modules as taskiq's own package."""
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp:
        real = json.loads(_run("OURS = False\n" + _MIDDLEWARES, tmp))
        ours = json.loads(_run("OURS = True\n" + _MIDDLEWARES, tmp))
    assert real["aiohttp_before"] is True  # what taskiq does by itself
    for key in ("all", "names", "path"):
        assert ours[key] == real[key], key
    assert ours["aiohttp_before"] is False and ours["aiohttp_after"] is True


def test_wojia_serve_workers_load_no_websocket_protocol() -> None:
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp:
        out = json.loads(_run(_UVICORN, tmp))
    assert out == {"ws": True, "websockets": False}


async def test_lazy_sandbox_builds_once_on_first_request_and_none_is_not_found() -> None:
    import httpx
    from fastapi import FastAPI

    from app_api.wiring.app import LazySandbox, install_error_handlers

    built: list[str] = []

    async def hello(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    def build() -> Any:
        built.append("x")
        return hello

    def build_state() -> Any:
        built.append("state")
        return FastAPI()

    app = FastAPI()
    install_error_handlers(app)
    app.mount("/sandbox/a", LazySandbox(build))
    app.mount("/sandbox/b", LazySandbox(lambda: None))
    assert built == []
    # The sandbox's own attributes through the mount (tests read its state): built then.
    stateful = LazySandbox(build_state)
    assert built == [] and stateful.state is getattr(stateful.built(), "state") and built == ["state"]
    built.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        first, second = await c.get("/sandbox/a/x"), await c.get("/sandbox/a/y")
        gone, unmounted = await c.get("/sandbox/b/x"), await c.get("/sandbox/c/x")
    assert (first.status_code, first.text, second.text) == (
        200,
        "/sandbox/a/x",
        "/sandbox/a/y",
    ) and built == ["x"]
    assert gone.status_code == unmounted.status_code == 404
    assert gone.json()["code"] == unmounted.json()["code"]


def test_redis_stand_in_without_numpy_and_httpx_cli_on_demand() -> None:
    """The stand-in works without numpy; httpx's command-line client is still there when asked for."""
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp:
        out = json.loads(_run(_STAND_IN, tmp))
    assert out == {"numpy": False, "fakeredis": True, "cli": "Command"}
