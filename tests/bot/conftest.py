"""The assistant's fixtures: the app with the bot router, and (for ``rasa`` tests) a real Rasa server.

The Rasa server runs the model trained by ``scripts/rasa-train.sh`` in its own Python 3.10
environment (``scripts/rasa-env.sh``), bound to loopback, and calls the app's action webhook on the
``live_url`` server of the same test app. Loading the model takes 30-40 s, so it is session-scoped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
RASA_PROJECT = ROOT / "bot" / "rasa"
ACTION_TOKEN = "test-bot-action-token"

os.environ.setdefault("WOJIA_BOT_ACTION_TOKEN", ACTION_TOKEN)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session", autouse=True)
async def bot_mounted(app: Any) -> None:
    """The app with the assistant's router (until the lead mounts it) and the seed catalogue loaded."""
    from app_api.core.db import session_scope
    from bot.router import router
    from columns.gov_services.seed import seed

    if not any(getattr(r, "path", "") == "/api/v1/bot/messages" for r in app.routes):
        app.include_router(router, prefix="/api/v1")
    async with session_scope() as s:
        await seed(s)


def _run_script(name: str) -> str:
    r = subprocess.run([str(SCRIPTS / name)], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        pytest.fail(f"{name} failed:\n{r.stderr[-3000:]}")
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def rasa_venv() -> Path:
    return Path(_run_script("rasa-env.sh"))


@pytest.fixture(scope="session")
def rasa_model(rasa_venv: Path) -> Path:
    return Path(_run_script("rasa-train.sh"))


class RasaServer:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
async def rasa_server(
    rasa_venv: Path, rasa_model: Path, live_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RasaServer]:
    port = _free_port()
    log = tmp_path_factory.mktemp("rasa") / "rasa.log"
    env = {
        **os.environ,
        "WOJIA_BOT_ACTION_URL": f"{live_url}/api/v1/bot/actions",
        "WOJIA_BOT_ACTION_TOKEN": os.environ["WOJIA_BOT_ACTION_TOKEN"],
        "RASA_TELEMETRY_ENABLED": "false",
        "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(rasa_venv / "bin" / "rasa"), "run", "--enable-api", "-i", "127.0.0.1", "-p", str(port),
             "--model", str(rasa_model), "--endpoints", "endpoints.yml", "--credentials", "credentials.yml"],
            cwd=RASA_PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = RasaServer(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 240
    async with httpx.AsyncClient(timeout=2) as c:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rasa exited early:\n{log.read_text()[-3000:]}")
            try:
                r = await c.get(f"{server.url}/status")
                if r.status_code == 200 and r.json().get("model_file"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"rasa did not start in time:\n{log.read_text()[-3000:]}")
            await asyncio.sleep(1)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rasa_url_configured(rasa_server: RasaServer) -> Iterator[str]:
    """Point the app's assistant settings at the running Rasa server."""
    from bot.config import get_bot_settings

    old = os.environ.get("WOJIA_BOT_RASA_URL")
    os.environ["WOJIA_BOT_RASA_URL"] = rasa_server.url
    get_bot_settings.cache_clear()
    yield rasa_server.url
    if old is None:
        os.environ.pop("WOJIA_BOT_RASA_URL", None)
    else:
        os.environ["WOJIA_BOT_RASA_URL"] = old
    get_bot_settings.cache_clear()
