"""PostgreSQL or Redis down: residents get 503 ``app.unavailable`` with Retry-After at once, not a 500
or a hang, and the api recovers by itself when the dependency is back.

The api runs for real (``wojia serve`` in a subprocess) pointed at a port where nothing listens; for
recovery a throwaway ``redis-server`` is then started on that port. The machine's shared services are
never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, wojia_serve

ROOT = Path(__file__).resolve().parents[2]


def serving(**env: str) -> Any:
    return wojia_serve(
        {**os.environ, "WOJIA_JOBS_EMBEDDED": "true", "WOJIA_IDENTITY_VERIFIER": "remote", **env}
    )


async def timed(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    r = await client.request(method, path, **kw)
    return r, time.perf_counter() - start


def assert_unavailable(r: httpx.Response, seconds: float) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "app.unavailable" and body["title"] == "系统繁忙，请稍后再试"
    assert int(r.headers["retry-after"]) > 0
    assert seconds < 1.0, f"answered after {seconds:.2f} s"


async def test_database_down_answers_503_within_a_second(app: Any) -> None:
    dead = free_port()
    async with serving(WOJIA_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{dead}/wojia") as client:
        for path in ("/api/v1/stations", "/api/v1/columns/gov_services/items"):
            r, seconds = await timed(client, "GET", path)
            assert_unavailable(r, seconds)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["database"].startswith("error")


async def test_redis_down_answers_503_and_recovers_without_a_restart(app: Any) -> None:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    async with serving(WOJIA_REDIS_URL=f"redis://127.0.0.1:{port}/0") as client:
        login = {"json": {"phone": "13800009999"}}
        r, seconds = await timed(client, "POST", "/api/v1/auth/sms-codes", **login)
        assert_unavailable(r, seconds)
        r, seconds = await timed(client, "GET", "/api/v1/home", headers={"authorization": "Bearer x.y.z"})
        assert r.status_code in {401, 503} and seconds < 1.0  # a bad token needs no Redis to refuse

        with tempfile.TemporaryDirectory() as tmp:
            redis = await asyncio.create_subprocess_exec(
                server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", tmp,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            try:
                for _ in range(50):
                    r = await client.post("/api/v1/auth/sms-codes", **login)
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(0.2)
                assert r.status_code == 202, r.text
            finally:
                redis.terminate()
                await redis.wait()


async def _recovering_postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """What PostgreSQL answers every new connection while it replays its WAL after a crash: the
    startup packet is refused with FATAL 57P03 (the wire protocol's ErrorResponse)."""
    try:
        while True:
            length = int.from_bytes(await reader.readexactly(4), "big")
            code = int.from_bytes(await reader.readexactly(4), "big")
            await reader.readexactly(length - 8)
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: "not here", then the startup
                writer.write(b"N")
                await writer.drain()
                continue
            fields = [b"SFATAL", b"VFATAL", b"C57P03", b"Mthe database system is starting up"]
            payload = b"".join(f + b"\0" for f in fields) + b"\0"
            writer.write(b"E" + (len(payload) + 4).to_bytes(4, "big") + payload)
            await writer.drain()
            break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_database_starting_up_answers_503_not_500(app: Any) -> None:
    """PostgreSQL up but still recovering refuses connections with SQLSTATE 57P03: an outage like
    any other (the fault suite saw it answered 500 after a kill -9 of PostgreSQL)."""
    server = await asyncio.start_server(_recovering_postgres, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with serving(
            WOJIA_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/wojia"
        ) as client:
            for path in ("/api/v1/stations", "/api/v1/columns/gov_services/items"):
                r, seconds = await timed(client, "GET", path)
                assert_unavailable(r, seconds)
    finally:
        server.close()
        await server.wait_closed()
