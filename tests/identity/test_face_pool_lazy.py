"""The face engine's worker processes start on the first face job and stop when idle.

A fresh ``wojia serve`` (the command deployments run) has no face-engine process after start-up,
nor after serving /healthz and the home screen; one face check starts one; with a short idle
setting it goes away, the next check starts a new one, and stopping the api stops it. In-process:
jobs arriving together start one pool, and a killed worker is replaced on the next job.
Processes are read from /proc (Linux).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from identity_api_helpers import (
    GENUINE_CLIP,
    burst_of,
    challenge,
    consented,
    problem,
    real_name,
    upload_burst,
)
from identity_helpers import LIMITS, face_bytes

from identity.face.pool import FaceEngine
from tests.citizens import new_id_number
from tests.conftest import free_port, real_login

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads processes from /proc")

ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 4.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def face_workers(pid: int) -> list[int]:
    """The face engine's worker processes under ``pid``: multiprocessing's spawned children."""
    found: list[int] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if "multiprocessing.spawn" in _cmdline(child) and _alive(child):
            found.append(child)
        todo += _children(child)
    return sorted(found)


def multiprocessing_children(pid: int) -> list[str]:
    """Every process multiprocessing started under ``pid`` (workers and the resource tracker)."""
    found: list[str] = []
    todo = _children(pid)
    while todo:
        child = todo.pop()
        if "multiprocessing" in _cmdline(child):
            found.append(_cmdline(child))
        todo += _children(child)
    return found


async def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.2)
    return condition()


@asynccontextmanager
async def serving(env: dict[str, str]) -> AsyncIterator[tuple[asyncio.subprocess.Process, httpx.AsyncClient]]:
    """``wojia serve`` in a subprocess on a free port; yields the process and a client once /healthz
    answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "app_api.wiring.cli", "serve", "--port", str(port), "--no-migrate"]
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=ROOT, stdout=log, stderr=log)

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for _ in range(600):
                    if proc.returncode is not None:
                        pytest.fail(f"wojia serve exited {proc.returncode}:\n{output()}")
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                else:
                    pytest.fail(f"wojia serve did not answer within two minutes:\n{output()}")
                yield proc, client
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 60)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def new_person(name: str, photo: str) -> str:
    """A population record with an ID photo in the local data center; returns the ID number."""
    from app_api.core.crypto import encrypt_bytes, encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.datahub.models import PopulationRecord
    from app_api.platform.datahub.service import id_hash

    birth = dt.date(1950 + secrets.randbelow(50), 1 + secrets.randbelow(12), 1 + secrets.randbelow(28))
    number = new_id_number("341602", birth)
    async with session_scope() as s:
        s.add(
            PopulationRecord(
                id_number_hash=id_hash(number),
                id_number_enc=encrypt_str(number, aad="id_number"),
                name_enc=encrypt_str(name, aad="name"),
                gender="男",
                birth_date=birth,
                address_enc=encrypt_str("安徽省亳州市谯城区测试路1号", aad="address"),
                photo_enc=encrypt_bytes(face_bytes(photo), aad="id_photo"),
            )
        )
    return number


async def face_check(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """One face check with a real 1.2 s burst (GRID, frontal, no head turn): the engine analyses
    the capture, and the check fails liveness (every challenge asks for both turns)."""
    c = await challenge(client, headers)
    frames, ts = burst_of(GENUINE_CLIP, 0, 30)
    r = await upload_burst(client, headers, c["challenge_id"], frames, ts)
    problem(r, 422, "identity.liveness_failed")


async def test_a_fresh_api_has_no_face_engine_until_a_face_check_and_loses_it_when_idle() -> None:
    env = {
        **os.environ,
        "WOJIA_IDENTITY_VERIFIER": "local",
        "WOJIA_IDENTITY_FACE_WORKERS": "1",
        "WOJIA_IDENTITY_FACE_POOL_IDLE_S": str(IDLE_S),
        "WOJIA_IDENTITY_FACE_JOB_TIMEOUT_S": "120",
        "WOJIA_IDENTITY_FACE_CAPTURE_TIMEOUT_S": "180",
    }
    async with serving(env) as (proc, client):
        pid = proc.pid
        assert multiprocessing_children(pid) == [], "face engine started with the api"
        headers = await real_login(client)
        for path in ("/healthz", "/api/v1/home"):
            r = await client.get(path, headers=headers)
            assert r.status_code == 200, r.text
        await asyncio.sleep(1)
        assert multiprocessing_children(pid) == [], "face engine started without a face check"

        number = await new_person("奥巴马", "obama_3.jpg")
        r = await real_name(client, headers, "奥巴马", number)
        assert r.status_code == 200, r.text
        await consented(client, headers)
        assert face_workers(pid) == []

        await face_check(client, headers)
        first = face_workers(pid)
        assert len(first) == 1, "one face check should start the one configured worker"

        assert await wait_for(lambda: face_workers(pid) == [] and not _alive(first[0]), IDLE_S + 30), (
            "idle worker was not stopped"
        )

        await face_check(client, headers)
        second = face_workers(pid)
        assert len(second) == 1 and second != first, "the next face check should start a new worker"

        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        # Stopping the api stopped (and joined) the worker: nothing left behind.
        assert not any(_alive(p) for p in second)


async def test_jobs_arriving_together_start_one_pool_and_a_killed_worker_is_replaced() -> None:
    before = set(face_workers(os.getpid()))
    engine = FaceEngine(limits=LIMITS, workers=1, max_inflight=8, timeout_s=120)
    try:
        assert not engine.running
        results = await asyncio.gather(*(engine.analyse(face_bytes("obama_1.jpg")) for _ in range(3)))
        assert all(a.ok for a in results)
        started = [p for p in face_workers(os.getpid()) if p not in before]
        assert len(started) == 1, started

        os.kill(started[0], signal.SIGKILL)
        assert await wait_for(lambda: not _alive(started[0]), 10)
        again = await engine.analyse(face_bytes("obama_1.jpg"))
        assert again.ok and again.encoding == results[0].encoding
        replaced = [p for p in face_workers(os.getpid()) if p not in before]
        assert len(replaced) == 1 and replaced != started
    finally:
        await engine.close()
    assert not _alive(replaced[0]), "close() should stop the worker"


async def test_an_idle_pool_stops_and_starts_again_on_the_next_job() -> None:
    before = set(face_workers(os.getpid()))
    engine = FaceEngine(limits=LIMITS, workers=1, timeout_s=120, idle_s=1.0)
    try:
        assert (await engine.analyse(face_bytes("obama_1.jpg"))).ok
        assert engine.running
        assert await wait_for(lambda: not engine.running, 20)
        assert await wait_for(lambda: not (set(face_workers(os.getpid())) - before), 20)
        assert (await engine.analyse(face_bytes("obama_1.jpg"))).ok
        assert engine.running and set(face_workers(os.getpid())) - before
    finally:
        await engine.close()
