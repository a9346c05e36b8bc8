"""Requests per second of GET /api/v1/home for a logged-in resident, 2 uvicorn workers, on
PostgreSQL and Redis, beside a bare FastAPI hello-world served the same way in the same run.

Prints both figures and their ratio (goal: at least 0.5). Needs wrk (Debian package `wrk`).
Usage: .venv/bin/python bench/home_rps.py [--seconds 10] [--connections 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_BASE = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def wrk(url: str, seconds: int, connections: int, token: str | None) -> tuple[float, str]:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{url}: {non2xx.group(1)} error responses\n{out}")
    p99 = re.search(r"99%\s+(\S+)", out)
    return rps, p99.group(1) if p99 else "?"


def serve(app: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(p: subprocess.Popen[bytes]) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)


async def make_token(env: dict[str, str]) -> str:
    os.environ.update(env)
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import get_or_create_resident
    from app_api.platform.accounts.tokens import issue_pair

    async with session_scope() as s:
        account, _ = await get_or_create_resident(s, phone="139" + f"{secrets.randbelow(10**8):08d}")
        pair = await issue_pair(s, account.id)
    return pair.access_token


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    import asyncpg

    db = f"wojia_bench_{secrets.token_hex(4)}"
    admin = PG_BASE.replace("postgresql+asyncpg://", "postgresql://")

    async def pg(sql: str) -> None:
        c = await asyncpg.connect(admin)
        await c.execute(sql)
        await c.close()

    asyncio.run(pg(f'CREATE DATABASE "{db}"'))
    env = {
        **os.environ,
        "WOJIA_DATABASE_URL": PG_BASE.rsplit("/", 1)[0] + f"/{db}",
        "WOJIA_REDIS_URL": REDIS,
        "WOJIA_ENVIRONMENT": "development",
        "WOJIA_JOBS_EMBEDDED": "true",
        "WOJIA_LOG_JSON": "true",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "app_api.wiring.cli", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        token = asyncio.run(make_token(env))
        hello_port, api_port = free_port(), free_port()
        procs.append(serve("bench.hello_app:app", hello_port, env))
        procs.append(serve("app_api.wiring.main:app", api_port, env))
        wait_up(f"http://127.0.0.1:{hello_port}/hello")
        wait_up(f"http://127.0.0.1:{api_port}/healthz")
        home_url = f"http://127.0.0.1:{api_port}/api/v1/home"
        r = httpx.get(home_url, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["categories"], r.text
        # Warm up both, then measure alternately so background noise hits both alike.
        wrk(f"http://127.0.0.1:{hello_port}/hello", 2, args.connections, None)
        wrk(home_url, 2, args.connections, token)
        hello_rps, hello_p99 = wrk(
            f"http://127.0.0.1:{hello_port}/hello", args.seconds, args.connections, None
        )
        home_rps, home_p99 = wrk(home_url, args.seconds, args.connections, token)
        print(f"hello-world  : {hello_rps:9.0f} req/s  p99 {hello_p99}")
        print(
            f"GET /home    : {home_rps:9.0f} req/s  p99 {home_p99}  (logged-in resident, PostgreSQL + Redis)"
        )
        print(
            f"ratio home/hello: {home_rps / hello_rps:.2f}  (goal >= 0.5)  "
            f"[2 uvicorn workers each, wrk -t2 -c{args.connections} -d{args.seconds}s, "
            f"{os.cpu_count()} cores]"
        )
    finally:
        for p in procs:
            stop(p)
        asyncio.run(pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
