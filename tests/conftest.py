"""Test harness: a real app with its lifespan, a fresh database built from the migrations.

Default: a temporary SQLite file and the in-process Redis stand-in. With ``WOJIA_DATABASE_URL``
(PostgreSQL) and ``WOJIA_REDIS_URL`` set, a fresh PostgreSQL database is created for the run and
dropped after it, and a Redis database is flushed at the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Settings are read at import time by some modules (the job broker): set the environment first.
# This module may be imported twice (as ``conftest`` and as ``tests.conftest``): configure once.
if not os.environ.get("_WOJIA_TEST_DB"):
    os.environ["WOJIA_ENVIRONMENT"] = "test"
    os.environ.setdefault("WOJIA_SMS_PER_IP_PER_HOUR", "1000000")
    os.environ.setdefault("WOJIA_SMS_PER_PHONE_PER_DAY", "1000")
    os.environ["WOJIA_JOBS_EMBEDDED"] = "true"
    # The schedules and the relay are driven by the tests that test them (a minute's sweep firing
    # in the middle of another test would change what it sees).
    os.environ["WOJIA_JOBS_RUN_LOOP"] = "false"
    os.environ["WOJIA_LOG_JSON"] = "false"
    _tmp = Path(tempfile.mkdtemp(prefix="wojia-test-"))
    os.environ.setdefault("WOJIA_VAR_DIR", str(_tmp))
    _base = os.environ.get("WOJIA_DATABASE_URL", "")
    os.environ["_WOJIA_PG_BASE"] = _base
    if _base.startswith("postgresql"):
        _db = f"wojia_test_{uuid.uuid4().hex[:10]}"
        os.environ["WOJIA_DATABASE_URL"] = _base.rsplit("/", 1)[0] + f"/{_db}"
        os.environ["_WOJIA_TEST_DB"] = _db
    else:
        os.environ["WOJIA_DATABASE_URL"] = f"sqlite+aiosqlite:///{_tmp / 'test.db'}"
        os.environ["_WOJIA_TEST_DB"] = "sqlite"
_PG_BASE = os.environ["_WOJIA_PG_BASE"]
_PG_DB: str | None = None if os.environ["_WOJIA_TEST_DB"] == "sqlite" else os.environ["_WOJIA_TEST_DB"]

import httpx  # noqa: E402
from asgi_lifespan import LifespanManager  # noqa: E402

FACES = Path(__file__).resolve().parent / "fixtures" / "faces"


def _admin_dsn() -> str:
    return _PG_BASE.replace("postgresql+asyncpg://", "postgresql://")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# Test modules that use neither the database nor Redis (the face engine and capture judge on real
# clips, several minutes on the shared cores). They are marked ``backend_independent`` so CI's second
# pass, on PostgreSQL and Redis, can leave them out: they would only repeat the first pass.
BACKEND_INDEPENDENT = frozenset(
    {
        "tests/identity/test_capture_attacks.py",
        "tests/identity/test_capture_genuine.py",
        "tests/identity/test_capture_input.py",
        "tests/identity/test_identity_face_engine.py",
        "tests/identity/test_identity_liveness.py",
        "tests/identity/test_identity_verifier.py",
    }
)
_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = [m for m in BACKEND_INDEPENDENT if not (_ROOT / m).is_file()]
    if missing:  # a renamed module must not silently start running twice, or stop being listed
        raise pytest.UsageError(f"BACKEND_INDEPENDENT lists missing modules: {missing}")
    for item in items:
        if Path(os.path.relpath(item.path, _ROOT)).as_posix() in BACKEND_INDEPENDENT:
            item.add_marker(pytest.mark.backend_independent)


def pytest_sessionstart(session: pytest.Session) -> None:
    if _PG_DB:
        asyncio.run(_pg(f'CREATE DATABASE "{_PG_DB}"'))
    from app_api.wiring.migrate import upgrade

    upgrade()
    redis_url = os.environ.get("WOJIA_REDIS_URL", "")
    if redis_url and not redis_url.startswith("memory://"):
        import redis

        redis.Redis.from_url(redis_url).flushdb()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _PG_DB:
        try:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{_PG_DB}" WITH (FORCE)'))
        except Exception as e:  # a failed drop must not hide the test result
            print(f"could not drop {_PG_DB}: {e}")


@pytest.fixture(scope="session")
def is_postgres() -> bool:
    return _PG_DB is not None


@pytest.fixture(scope="session")
async def app() -> AsyncIterator[Any]:
    from app_api.wiring.app import create_app

    application = create_app()
    async with LifespanManager(application, startup_timeout=60):
        yield application


@pytest.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def session() -> AsyncIterator[Any]:
    from app_api.core.db import sessionmaker

    async with sessionmaker()() as s:
        yield s


def new_phone() -> str:
    return "139" + f"{secrets.randbelow(10**8):08d}"


@pytest.fixture
def phone() -> str:
    return new_phone()


async def sms_code(client: httpx.AsyncClient, phone: str) -> str:
    r = await client.get("/api/v1/dev/sms", params={"phone": phone})
    assert r.status_code == 200, r.text
    import re

    text = r.json()["messages"][0]["text"]
    m = re.search(r"验证码为(\d{6})", text)
    assert m, text
    return m.group(1)


LoginFn = Callable[..., Awaitable[dict[str, str]]]


async def real_login(
    client: httpx.AsyncClient,
    phone: str | None = None,
    roles: list[str] | None = None,
    level: int | None = None,
    **staff: Any,
) -> dict[str, str]:
    """Authorization headers through the real SMS flow (staff: password + SMS code)."""
    phone = phone or new_phone()
    password = None
    if roles and roles != ["resident"]:
        from app_api.core.db import session_scope
        from app_api.platform.accounts.service import create_staff

        password = "Test-" + secrets.token_hex(6)
        async with session_scope() as s:
            await create_staff(s, phone=phone, password=password, roles=roles, **staff)
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202, r.text
    code = await sms_code(client, phone)
    if password:
        r = await client.post(
            "/api/v1/auth/staff/login", json={"phone": phone, "code": code, "password": password}
        )
    else:
        r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    if level is not None:
        await set_level(client, headers, level)
    return headers


@pytest.fixture
def login(client: httpx.AsyncClient) -> LoginFn:
    """``await login(phone=None, roles=None, **staff_fields)`` → Authorization headers, via the real SMS flow."""

    async def _login(
        phone: str | None = None, roles: list[str] | None = None, level: int | None = None, **staff: Any
    ) -> dict[str, str]:
        return await real_login(client, phone, roles, level, **staff)

    return _login


async def set_level(client: httpx.AsyncClient, headers: dict[str, str], level: int) -> None:
    """Raise an account's identity level directly (for tests of other features than identity itself)."""
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import raise_level

    me = (await client.get("/api/v1/me", headers=headers)).json()
    async with session_scope() as s:
        await raise_level(s, me["id"], level, reason="test")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def wojia_serve(env: dict[str, str], *args: str) -> AsyncIterator[httpx.AsyncClient]:
    """``wojia serve`` (the command deployments run) in a subprocess on a free loopback port, with
    ``env`` as its whole environment and ``args`` added (``"--workers", "2"``); yields a client
    once ``/healthz`` answers.

    Shedding on event-loop lag is off unless ``env`` sets ``WOJIA_SHED_LOOP_LAG_MS``: on a loaded
    two-core CI machine a production-mode server's loop lags past 200 ms now and then (a garbage
    collection of the whole heap, a neighbour's burst), and a test of something else would get
    503 ``app.overloaded`` (tests/app_api/core/test_shedding.py tests the shedding itself)."""
    import sys

    env = {"WOJIA_SHED_LOOP_LAG_MS": "0", **env}

    port = free_port()
    cmd = [sys.executable, "-m", "app_api.wiring.cli", "serve", "--port", str(port), "--no-migrate", *args]
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=root, stdout=log, stderr=log)

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                for _ in range(600):
                    if proc.returncode is not None:
                        break
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                else:
                    pytest.fail(f"wojia serve did not answer within two minutes:\n{output()}")
                if proc.returncode is not None:
                    pytest.fail(f"wojia serve exited {proc.returncode}:\n{output()}")
                try:
                    yield client
                except httpx.TransportError:
                    pytest.fail(f"wojia serve dropped the connection:\n{output()}")
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@pytest.fixture(scope="session")
async def live_url(app: Any) -> AsyncIterator[str]:
    """The same app served over real HTTP on loopback (same event loop; lifespan already running)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@contextlib.contextmanager
def counted_statements() -> Iterator[list[str]]:
    """The SQL statements run on the app's engine inside the block (whitespace collapsed)."""
    from sqlalchemy import event

    from app_api.core.db import get_engine

    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(" ".join(statement.split()))

    engine = get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", listen)
