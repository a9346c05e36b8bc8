"""What the HTTP benches share: servers, the load generator, a scratch database, fair alternation.

- **Load generator:** wrk (Debian package ``wrk``, installed by ``make system-deps``).
- **CPUs:** where the machine has two or more, the load generator runs on a core of its own (the
  last one) and the servers on the others (``taskset``), so the client does not compete with what it
  measures; ``--no-pin`` shares every core. The plan actually used is printed with the figures.
- **Alternation:** the sides are measured A, B, A, B, ... (``rounds`` each, after one warm-up), and
  the ratio reported is the median of the per-round ratios: background noise (other processes on a
  shared machine) lands on both sides alike instead of on one.
- **Stops what is not measured:** a server that is not being measured is paused (SIGSTOP on its
  process group, SIGCONT before its turn), so its background tasks take no CPU from the other side;
  the api runs without the embedded job worker (``WOJIA_JOBS_EMBEDDED=false``).
- **Databases:** a scratch PostgreSQL database is created from the admin DSN in ``BENCH_PG``
  (default ``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``) and dropped afterwards; the
  shared ``test`` database is refused. Redis: ``BENCH_REDIS`` (default db 12; not flushed, other
  benches may be using it at the same time).
- **Machine-readable result:** ``--json`` makes a bench print one final line
  ``BENCH {"work": ..., "goal": ..., "figure": ..., "ratio": ...}``, collected by bench/report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PG = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
# Databases a bench must never create objects in or drop (other sessions' tests use them).
SHARED_DATABASES = frozenset({"test"})


# ---------------------------------------------------------------- command line and the result line


def add_common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (>= 1)")
    ap.add_argument("--seconds", type=int, default=10, help="seconds per measurement")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers per server")
    ap.add_argument("--no-pin", action="store_true", help="do not pin client and servers to cores")
    ap.add_argument(
        "--json",
        action="store_true",
        default=json_requested(),
        help="print a final line BENCH {json} (also with BENCH_JSON=1, as bench/report.py runs it)",
    )


def json_requested() -> bool:
    """Whether a bench should print its BENCH line: ``--json`` or ``BENCH_JSON=1``."""
    return "--json" in sys.argv[1:] or os.environ.get("BENCH_JSON") == "1"


def emit(enabled: bool, *, work: str, goal: str, figure: str, ratio: float | None, **extra: Any) -> None:
    """The result line bench/report.py collects (``ratio``: figure / goal, >= 1 is met; or None)."""
    if enabled:
        record = {"work": work, "goal": goal, "figure": figure, "ratio": ratio, **extra}
        print("BENCH " + json.dumps(record, ensure_ascii=False), flush=True)


# ---------------------------------------------------------------- CPUs


@dataclass(frozen=True)
class CpuPlan:
    server: tuple[int, ...]
    client: tuple[int, ...]
    pinned: bool

    def label(self) -> str:
        if not self.pinned:
            return f"client and servers share cpus {_cpus(self.server)}"
        return f"servers on cpu {_cpus(self.server)}, load generator on cpu {_cpus(self.client)}"

    def server_prefix(self) -> list[str]:
        return ["taskset", "-c", _cpus(self.server)] if self.pinned else []

    def client_prefix(self) -> list[str]:
        return ["taskset", "-c", _cpus(self.client)] if self.pinned else []


def _cpus(cpus: Sequence[int]) -> str:
    return ",".join(map(str, cpus))


def cpu_plan(no_pin: bool = False) -> CpuPlan:
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    if no_pin or len(cpus) < 2 or not shutil.which("taskset"):
        return CpuPlan(cpus, cpus, pinned=False)
    return CpuPlan(cpus[:-1], cpus[-1:], pinned=True)


# ---------------------------------------------------------------- databases


def _plain(dsn: str) -> str:
    return re.sub(r"^postgresql\+\w+://", "postgresql://", dsn)


def _dbname(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1].split("?", 1)[0]


@contextlib.contextmanager
def scratch_database(admin_dsn: str = ADMIN_PG) -> Iterator[str]:
    """A fresh PostgreSQL database (its asyncpg DSN), dropped on exit."""
    import asyncpg

    if _dbname(admin_dsn) in SHARED_DATABASES:
        raise SystemExit(
            f"BENCH_PG points at the shared database {_dbname(admin_dsn)!r}: use an admin "
            "database such as .../postgres (the bench creates and drops its own)"
        )
    name = f"wojia_bench_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(_plain(admin_dsn))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        base = admin_dsn.rsplit("/", 1)[0]
        if not base.startswith("postgresql+"):
            base = base.replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def api_env(database_url: str, redis_url: str = REDIS, **extra: str) -> dict[str, str]:
    """Environment for the api under a bench: no embedded job worker, no access log file."""
    return {
        **os.environ,
        "WOJIA_DATABASE_URL": database_url,
        "WOJIA_REDIS_URL": redis_url,
        "WOJIA_ENVIRONMENT": "development",
        "WOJIA_JOBS_EMBEDDED": "false",
        "WOJIA_LOG_JSON": "true",
        **extra,
    }


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "app_api.wiring.cli", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """``uvicorn APP --workers N`` in its own process group, pinned per the plan."""

    app: str
    env: dict[str, str]
    workers: int
    plan: CpuPlan
    port: int = 0
    health: str = "/healthz"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    paused: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> Server:
        self.port = self.port or free_port()
        cmd = [
            *self.plan.server_prefix(),
            sys.executable,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise SystemExit(f"{self.app} exited at start-up:\n{err[-3000:]}")
            try:
                if httpx.get(self.base + self.health, timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.app} did not answer on {self.base}{self.health}")

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def pause(self) -> None:
        if not self.paused:
            self._signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._signal(signal.SIGCONT)
            self.paused = False
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.resume()
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.stop()


# ---------------------------------------------------------------- load generator


@dataclass(frozen=True)
class Load:
    rps: float
    p99: str
    errors: int
    output: str = field(default="", repr=False)


def need_wrk() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: make system-deps (Debian package wrk)")


def wrk(
    url: str, *, seconds: int, connections: int, plan: CpuPlan, headers: dict[str, str] | None = None
) -> Load:
    threads = max(1, min(len(plan.client), connections))
    cmd = [*plan.client_prefix(), "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise SystemExit(f"wrk printed no rate for {url}:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if sock:
        errors += sum(int(g) for g in sock.groups())
    # The latency distribution's line, not a "+/- Stdev" column that ends in 99% (e.g. 1.99%).
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    return Load(float(found.group(1)), p99.group(1) if p99 else "?", errors, out)


# ---------------------------------------------------------------- alternation


@dataclass(frozen=True)
class Side:
    name: str
    server: Server
    measure: Callable[[], Load]


@dataclass
class Alternation:
    sides: tuple[Side, ...]
    rounds: list[dict[str, Load]] = field(default_factory=list)

    def ratios(self, num: str, den: str) -> list[float]:
        return [r[num].rps / r[den].rps for r in self.rounds]

    def median_ratio(self, num: str, den: str) -> float:
        return statistics.median(self.ratios(num, den))

    def median_rps(self, name: str) -> float:
        return statistics.median(r[name].rps for r in self.rounds)


def alternate(
    sides: Sequence[Side], rounds: int, *, warmup: bool = True, verbose: bool = True
) -> Alternation:
    """Measure the sides A, B, A, B, ... with only the measured side's server running."""
    result = Alternation(tuple(sides))

    def only(side: Side) -> None:
        for other in sides:
            if other.server is not side.server:
                other.server.pause()
        side.server.resume()

    try:
        if warmup:
            for side in sides:
                only(side)
                side.measure()
        for n in range(1, max(1, rounds) + 1):
            row: dict[str, Load] = {}
            for side in sides:
                only(side)
                row[side.name] = load = side.measure()
                if load.errors:
                    raise SystemExit(f"{side.name}: {load.errors} errors in round {n}:\n{load.output}")
            result.rounds.append(row)
            if verbose:
                figures = "  ".join(f"{k} {v.rps:8.0f} req/s (p99 {v.p99})" for k, v in row.items())
                print(f"round {n}: {figures}", flush=True)
    finally:
        for side in sides:
            side.server.resume()
    return result
