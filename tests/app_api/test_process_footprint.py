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
}

_PROBE = """
import json, sys
import app_api.wiring.main
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
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
        loaded = set(json.loads(_run(_PROBE, tmp)))
    # The probe sees what it should: the api's own stack is there.
    assert {"app_api", "fastapi", "sqlalchemy", "httpx"} <= loaded
    found = {name: where for name, where in DEFERRED.items() if name in loaded}
    assert not found, f"imported at start-up, expected only on first use: {found}"


def test_redis_stand_in_without_numpy_and_httpx_cli_on_demand() -> None:
    """The stand-in works without numpy; httpx's command-line client is still there when asked for."""
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp:
        out = json.loads(_run(_STAND_IN, tmp))
    assert out == {"numpy": False, "fakeredis": True, "cli": "Command"}
