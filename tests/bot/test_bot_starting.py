"""While the assistant is not serving: the chat answers 503 and says why, the rest of the app works.

``make run`` serves the API at once and starts Rasa in the background (``bot/rasa-run.sh``: build the
environment and train the model when they are not cached, then load it). The start script writes
``<phase> <pid>`` to the state file; a chat meanwhile is answered ``bot.starting`` with Retry-After.
Without a start under way (no file, or its process gone) Rasa is down: ``bot.unavailable`` with the
hotline. No trained model is needed here: Rasa is simply not listening.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import BotSettings, get_bot_settings

URL = "/api/v1/bot/messages"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once the socket is closed


@pytest.fixture
def state_file(app: Any, tmp_path: Path) -> Iterator[Path]:
    """The assistant's settings pointing at a Rasa that is not listening, and a state file."""
    path = tmp_path / "rasa.state"
    settings = BotSettings(rasa_url=closed_port_url(), state_file=str(path), starting_retry_after_s=20)
    app.dependency_overrides[get_bot_settings] = lambda: settings
    yield path
    app.dependency_overrides.pop(get_bot_settings, None)


def gone_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this pid now (not reused within the test)


@pytest.mark.parametrize(("phase", "says"), [("training", "训练"), ("loading", "加载")])
async def test_a_chat_while_the_assistant_starts_is_told_to_come_back(
    client: httpx.AsyncClient, state_file: Path, phase: str, says: str
) -> None:
    state_file.write_text(f"{phase} {os.getpid()}\n")
    r = await client.post(URL, json={"message": "老年证要带什么材料"})
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "bot.starting" and says in r.json()["detail"]
    assert r.headers["retry-after"] == "20"
    # The rest of the app does not wait for the assistant.
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("content", [None, "loading {gone}", "ready {me}", "garbage", ""])
async def test_without_a_start_under_way_the_assistant_is_down_and_the_hotline_offered(
    client: httpx.AsyncClient, state_file: Path, content: str | None
) -> None:
    if content is not None:
        state_file.write_text(content.format(gone=gone_pid(), me=os.getpid()))
    r = await client.post(URL, json={"message": "老年证要带什么材料"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "bot.unavailable" and "12345" in r.json()["title"]
    assert "retry-after" not in r.headers
    assert (await client.get("/healthz")).status_code == 200


def test_the_start_script_reports_its_phase_under_its_own_pid(tmp_path: Path) -> None:
    """``bot/rasa-run.sh`` writes the state file before its slow steps, with the pid that Rasa keeps
    (exec); run with the environment script failing at once, it has written ``training <pid>``."""
    root = Path(__file__).resolve().parents[2]
    state = tmp_path / "rasa.state"
    fake_root = tmp_path / "root"
    (fake_root / "bot").mkdir(parents=True)
    (fake_root / "scripts").mkdir()
    (fake_root / "bot" / "rasa-run.sh").write_text((root / "bot" / "rasa-run.sh").read_text())
    failing = fake_root / "scripts" / "rasa-env.sh"
    failing.write_text("#!/usr/bin/env bash\nexit 3\n")
    failing.chmod(0o755)
    p = subprocess.Popen(
        ["bash", str(fake_root / "bot" / "rasa-run.sh")],
        env={**os.environ, "WOJIA_BOT_STATE_FILE": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert p.wait(timeout=30) == 3
    assert state.read_text().split() == ["training", str(p.pid)]
