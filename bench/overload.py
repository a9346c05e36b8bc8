"""Overload: GET /api/v1/home for a logged-in resident at four times the load the machine serves,
with load shedding on (the default ``WOJIA_MAX_IN_FLIGHT``) and, for comparison, off.

1. ``wojia serve --workers 2`` on a spare port (the embedded default: SQLite and the in-process
   Redis stand-in; PostgreSQL and Redis with ``--pg``, which uses BENCH_PG / BENCH_REDIS).
2. Capacity: closed-loop clients (each sends its next request when the last one was answered),
   doubled until throughput stops growing; the best throughput is what the machine serves.
3. Overload: open-loop arrivals at 4x that rate (evenly spaced, as many connections as needed,
   latency counted from the moment a request was due, so a late send is not hidden), with a 10 s
   client timeout.

Before each open-loop run the server's database and Redis pools are warmed (closed loop, 3 s) and
512 connections are opened, as a proxy's keep-alive pool would hold them.

The load generator is a separate process (raw HTTP/1.1 keep-alive over asyncio, uvloop when
installed): an HTTP client library would spend the CPU the server needs. It runs on a core of its
own where the machine has two or more, and the server on the others (``--no-pin``: all shared): a
generator starved of CPU sends late, and the lateness would be counted as the server's latency.

Prints capacity, offered load, and for shedding on and off: accepted count with p50/p99, shed
(503) count with p50/p99, timeouts and other errors. Goal: accepted p99 <= 1 s and shed answered
fast with shedding on.

The default read is the resident's bills list (about 10 ms of CPU per request). The home screen
(``--path /api/v1/home``) is cached and about ten times cheaper: four times its capacity is more
requests than uvicorn can read and answer 503 on two cores (a shed answer costs a few tenths of
a millisecond), so the backlog builds before the application sees it; that load has to be limited
in front of the api (the proxy's connection and request limits).

BENCH_DEBUG=1 prints accepted and shed counts and medians per second of the run.

Usage: .venv/bin/python bench/overload.py [--seconds 10] [--factor 4] [--max-in-flight N]
       [--lag-ms 200] [--path /api/v1/...] [--rate R] [--no-off] [--pg] [--no-pin] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._harness import emit, json_requested

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Admin connection: the bench creates and drops its own database there (never the shared "test").
PG_BASE = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/12")
# A typical authenticated read: the resident's utility bills (the column gate, the resident's
# bindings from the database). --path /api/v1/home measures the home screen (cached, ~10x cheaper:
# 4x its capacity is more than a Python server can even read on two shared cores, see the README).
PATH = "/api/v1/columns/utilities/bills"
TIMEOUT_S = 10.0
# Connections the generator may hold open (a proxy's pool towards the api; well above the limit).
MAX_CONNECTIONS = 2000
# Connections opened before an open-loop run starts.
PREOPEN = 512


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# --- the load generator (runs in its own process: ``overload.py _load <json>``) -------------------
#
# Event-driven, no task per request: each connection is an asyncio.Protocol that parses its answer
# (status line, Content-Length, body) and hands itself back when done.


class Conn(asyncio.Protocol):
    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.due = 0.0  # when the request being answered was due (0: idle)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, due: float) -> None:
        assert self.transport is not None
        self.due = due
        self.transport.write(self.gen.raw)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end]
        length = 0
        i = head.lower().find(b"\r\ncontent-length:")
        if i >= 0:
            length = int(head[i + 17 :].split(b"\r\n", 1)[0])
        if len(self.buf) < end + 4 + length:
            return
        status = int(head[9:12])
        if status == 503 and b"app.overloaded" not in self.buf[end + 4 : end + 4 + length]:
            status = 599  # another 503 (a dependency unavailable): not a shed answer
        self.buf = self.buf[end + 4 + length :]
        due, self.due = self.due, 0.0
        self.gen.done(self, status, due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.due:
            due, self.due = self.due, 0.0
            self.gen.failed(self, due)
        else:
            self.gen.forget(self)


class Generator:
    def __init__(self, host: str, port: int, raw: bytes, max_connections: int) -> None:
        self.host, self.port, self.raw = host, port, raw
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self.conns: set[Conn] = set()
        self.idle: list[Conn] = []
        self.backlog: collections.deque[float] = collections.deque()  # due times not yet sent
        self.opening = 0
        self.opened = 0
        # (status, seconds since due, due); status 0: timeout or error
        self.results: list[tuple[int, float, float]] = []
        self.closed_loop = False

    def submit(self, due: float) -> None:
        if self.idle:
            self.idle.pop().send(due)
            return
        self.backlog.append(due)
        if len(self.conns) + self.opening < self.max_connections:
            self.opening += 1
            self.loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: Conn(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.backlog:
                due = self.backlog.popleft()
                self.results.append((0, time.perf_counter() - due, due))
            return
        self.opening -= 1
        self.opened += 1
        self.conns.add(conn)
        self._next(conn)

    def _next(self, conn: Conn) -> None:
        if self.closed_loop:
            conn.send(time.perf_counter())
        elif self.backlog:
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)

    def done(self, conn: Conn, status: int, due: float) -> None:
        self.results.append((status, time.perf_counter() - due, due))
        self._next(conn)

    def failed(self, conn: Conn, due: float) -> None:
        self.results.append((0, time.perf_counter() - due, due))
        self.forget(conn)

    def forget(self, conn: Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)

    def expire(self) -> None:
        """Requests unanswered after the client timeout: counted as timeouts, their connection closed."""
        now = time.perf_counter()
        while self.backlog and now - self.backlog[0] > TIMEOUT_S:
            due = self.backlog.popleft()
            self.results.append((0, now - due, due))
        for conn in list(self.conns):
            if conn.due and now - conn.due > TIMEOUT_S and conn.transport is not None:
                conn.transport.abort()

    def close(self) -> None:
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()


async def closed_loop(gen: Generator, clients: int, seconds: float) -> dict[str, Any]:
    gen.closed_loop = True
    start = time.perf_counter()
    for _ in range(clients):
        gen.submit(start)
    await asyncio.sleep(seconds)
    gen.closed_loop = False
    elapsed = time.perf_counter() - start
    ok = [t for s, t, _ in gen.results if s == 200]
    errors = len(gen.results) - len(ok)
    gen.close()
    return {"rps": len(ok) / elapsed, "errors": errors, "p99": pct(ok, 99)}


async def open_loop(gen: Generator, rate: float, seconds: float) -> dict[str, Any]:
    # Connections are opened beforehand, as a proxy's keep-alive pool would hold them: the run
    # measures requests, not 2000 clients connecting in the same millisecond.
    for _ in range(PREOPEN):
        gen.opening += 1
        await gen._open()
    start = time.perf_counter()
    n = int(rate * seconds)
    sent = 0
    last_expire = start
    while sent < n:
        now = time.perf_counter()
        due_count = min(n, int((now - start) * rate) + 1)
        while sent < due_count:
            gen.submit(start + sent / rate)
            sent += 1
        if now - last_expire > 0.1:
            gen.expire()
            last_expire = now
        await asyncio.sleep(0.001)
    sent_in = time.perf_counter() - start
    while len(gen.results) < n:
        await asyncio.sleep(0.05)
        gen.expire()
    gen.close()
    ok = [t for s, t, _ in gen.results if s == 200]
    shed = [t for s, t, _ in gen.results if s == 503]
    return {
        "offered": n,
        "offered_rps": n / sent_in,
        "accepted": len(ok),
        "accepted_p50": pct(ok, 50),
        "accepted_p99": pct(ok, 99),
        "shed": len(shed),
        "shed_p50": pct(shed, 50),
        "shed_p99": pct(shed, 99),
        "timeouts_errors": sum(1 for s, _, _ in gen.results if s == 0),
        "other": sum(1 for s, _, _ in gen.results if s not in (0, 200, 503)),
        "connections": gen.opened,
        "by_second": by_second(gen.results, start) if os.environ.get("BENCH_DEBUG") else None,
    }


def by_second(results: list[tuple[int, float, float]], start: float) -> list[str]:
    rows = []
    for sec in range(int(max(d for _, _, d in results) - start) + 1):
        part = [(s, t) for s, t, d in results if sec <= d - start < sec + 1]
        ok = [t for s, t in part if s == 200]
        shed = [t for s, t in part if s == 503]
        rows.append(f"{sec}s ok {len(ok)} p50 {pct(ok, 50):.3f} shed {len(shed)} p50 {pct(shed, 50):.3f}")
    return rows


def load_main(spec: dict[str, Any]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, MAX_CONNECTIONS + 100)), hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    raw = (
        f"GET {spec.get('path', PATH)} HTTP/1.1\r\nHost: 127.0.0.1:{spec['port']}\r\n"
        f"Authorization: Bearer {spec['token']}\r\nAccept: application/json\r\n\r\n"
    ).encode()

    async def run() -> dict[str, Any]:
        gen = Generator("127.0.0.1", spec["port"], raw, MAX_CONNECTIONS)
        if spec["mode"] == "closed":
            return await closed_loop(gen, spec["clients"], spec["seconds"])
        return await open_loop(gen, spec["rate"], spec["seconds"])

    out = asyncio.run(run())
    for row in out.pop("by_second", None) or []:
        print(row, file=sys.stderr)
    print(json.dumps(out))


# Cores for the load generator and for the server (``pin_cores``): empty sets, no pinning.
CLIENT_CPUS: set[int] = set()
SERVER_CPUS: set[int] = set()


def pin_cores() -> str:
    """Give the load generator a core of its own where the machine has two or more, and the server
    (its workers inherit it) the rest, so the generator's own work does not show as server latency
    and the server never waits for the generator's CPU. Capacity is measured the same way, so the
    factor stays relative to what the server gets."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return f"not pinned ({len(cpus)} core)"
    CLIENT_CPUS.clear()
    CLIENT_CPUS.add(cpus[-1])
    SERVER_CPUS.clear()
    SERVER_CPUS.update(cpus[:-1])
    return f"server on cores {sorted(SERVER_CPUS)}, load generator on core {cpus[-1]}"


def _pinned(cpus: set[int]) -> Any:
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def drive(**spec: Any) -> dict[str, Any]:
    """Run the load generator in its own process; its JSON result."""
    proc = subprocess.run(
        [sys.executable, __file__, "_load", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=_pinned(CLIENT_CPUS),
    )
    if proc.returncode != 0:
        raise SystemExit(f"load generator failed:\n{proc.stderr[-3000:]}")
    if os.environ.get("BENCH_DEBUG"):
        print(proc.stderr, end="")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --- the server --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "app_api.wiring.cli", "serve", "--port", str(port)]
    cmd += ["--workers", "2", "--no-migrate"]
    log = open(Path(env["WOJIA_VAR_DIR"]) / f"serve-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_pinned(SERVER_CPUS),
    )
    end = time.time() + 120
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"wojia serve exited {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop(proc)
    raise SystemExit("wojia serve did not come up")


def stop(p: subprocess.Popen[bytes]) -> None:
    os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


async def make_token() -> str:
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import get_or_create_resident
    from app_api.platform.accounts.tokens import issue_pair

    async with session_scope() as s:
        account, _ = await get_or_create_resident(s, phone="139" + f"{secrets.randbelow(10**8):08d}")
        pair = await issue_pair(s, account.id)
    return pair.access_token


def capacity(port: int, token: str, seconds: float, path: str) -> tuple[float, int]:
    """The best closed-loop throughput, doubling the clients until two doublings in a row did not
    raise it by 5 % (at least up to 16 clients)."""
    drive(mode="closed", port=port, token=token, path=path, clients=8, seconds=2)  # warm-up
    best, best_clients, clients, flat = 0.0, 1, 1, 0
    while clients <= 256 and (flat < 2 or clients <= 16):
        r = drive(mode="closed", port=port, token=token, path=path, clients=clients, seconds=seconds)
        print(f"  closed loop {clients:4d} clients: {r['rps']:7.0f} req/s  p99 {r['p99'] * 1000:6.0f} ms")
        flat = flat + 1 if r["rps"] < best * 1.05 else 0
        if r["rps"] > best:
            best, best_clients = r["rps"], clients
        clients *= 2
    if best == 0:
        raise SystemExit(f"no request succeeded: {r}")
    return best, best_clients


def warm_up(port: int, token: str, limit: int, path: str) -> None:
    """Fill the server's database and Redis pools (a cold start is not what this bench measures)."""
    drive(mode="closed", port=port, token=token, path=path, clients=2 * max(limit, 16), seconds=3)


def report(label: str, r: dict[str, Any]) -> None:
    def ms(v: float) -> str:
        return "-" if v != v else f"{v * 1000:.0f} ms"

    print(
        f"{label}: offered {r['offered']} ({r['offered_rps']:.0f} req/s); "
        f"accepted {r['accepted']} p50 {ms(r['accepted_p50'])} p99 {ms(r['accepted_p99'])}; "
        f"shed {r['shed']} p50 {ms(r['shed_p50'])} p99 {ms(r['shed_p99'])}; "
        f"timeouts/errors {r['timeouts_errors']}; other {r['other']}; connections {r['connections']}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--factor", type=float, default=4)
    ap.add_argument("--max-in-flight", type=int, default=None, help="default: the setting's default")
    ap.add_argument(
        "--lag-ms", type=int, default=200, help="WOJIA_SHED_LOOP_LAG_MS (the default outside development)"
    )
    ap.add_argument("--rate", type=float, default=None, help="skip the capacity search; offer this")
    ap.add_argument("--no-off", action="store_true", help="skip the run with shedding off")
    ap.add_argument("--path", default=PATH, help="the authenticated GET to load")
    ap.add_argument("--pg", action="store_true", help="PostgreSQL and Redis (BENCH_PG / BENCH_REDIS)")
    ap.add_argument("--no-pin", action="store_true", help="let the generator and the server share all cores")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, a fresh server each; the median is judged")
    ap.add_argument("--json", action="store_true", default=json_requested(), help="print a final BENCH line")
    args = ap.parse_args()
    pinning = "not pinned (--no-pin)" if args.no_pin else pin_cores()

    tmp = tempfile.TemporaryDirectory(prefix="wojia-overload-")
    env = {
        **os.environ,
        "WOJIA_ENVIRONMENT": "development",
        "WOJIA_VAR_DIR": tmp.name,
        "WOJIA_LOG_JSON": "true",
        # The face engine's process pool is not what this bench measures: keep it out of the workers.
        "WOJIA_IDENTITY_VERIFIER": "remote",
    }
    db = f"wojia_bench_{secrets.token_hex(4)}"
    admin = PG_BASE.replace("postgresql+asyncpg://", "postgresql://")

    async def pg(sql: str) -> None:
        import asyncpg

        c = await asyncpg.connect(admin)
        await c.execute(sql)
        await c.close()

    if args.pg:
        asyncio.run(pg(f'CREATE DATABASE "{db}"'))
        env |= {"WOJIA_DATABASE_URL": PG_BASE.rsplit("/", 1)[0] + f"/{db}", "WOJIA_REDIS_URL": REDIS}
    else:
        env |= {"WOJIA_DATABASE_URL": f"sqlite+aiosqlite:///{tmp.name}/wojia.db"}
        env.pop("WOJIA_REDIS_URL", None)
    os.environ.update(env)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "app_api.wiring.cli", "db", "upgrade"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
        )
        token = asyncio.run(make_token())
        from app_api.core.settings import Settings

        limit = args.max_in_flight if args.max_in_flight is not None else Settings().max_in_flight
        port = free_port()
        on_env = {**env, "WOJIA_MAX_IN_FLIGHT": str(limit), "WOJIA_SHED_LOOP_LAG_MS": str(args.lag_ms)}
        procs.append(serve(port, on_env))
        r = httpx.get(f"http://127.0.0.1:{port}{args.path}", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        cores = f"{os.cpu_count()} cores; {pinning}"
        ons: list[dict[str, Any]] = []
        for n in range(1, args.rounds + 1):
            if n > 1:  # each round on a freshly started server
                port = free_port()
                procs.append(serve(port, on_env))
            print(f"-- round {n} of {args.rounds}")
            if args.rate is None:
                print(f"capacity of GET {args.path} (wojia serve --workers 2, {cores}):")
                cap, clients = capacity(port, token, min(args.seconds, 3), args.path)
                print(f"capacity: {cap:.0f} req/s (closed loop, {clients} clients)")
                rate = cap * args.factor
            else:
                rate = args.rate
            print(f"offered load: {rate:.0f} req/s open loop for {args.seconds:g} s, timeout {TIMEOUT_S:g} s")
            warm_up(port, token, limit, args.path)
            on = drive(mode="open", port=port, token=token, path=args.path, rate=rate, seconds=args.seconds)
            report(f"shedding on  (WOJIA_MAX_IN_FLIGHT={limit}, WOJIA_SHED_LOOP_LAG_MS={args.lag_ms})", on)
            ons.append(on)
            stop(procs.pop())
            if not args.no_off:
                port = free_port()
                procs.append(serve(port, {**env, "WOJIA_MAX_IN_FLIGHT": "0"}))
                warm_up(port, token, limit, args.path)
                off = drive(
                    mode="open", port=port, token=token, path=args.path, rate=rate, seconds=args.seconds
                )
                report("shedding off (WOJIA_MAX_IN_FLIGHT=0)", off)
                stop(procs.pop())
        met = [o["accepted_p99"] <= 1.0 and o["shed_p99"] <= 1.0 for o in ons]
        median_p99 = sorted(o["accepted_p99"] for o in ons)[len(ons) // 2]
        median_shed = sorted(o["shed_p99"] for o in ons)[len(ons) // 2]
        goal = median_p99 <= 1.0 and median_shed <= 1.0
        print(
            f"median of {len(ons)} rounds with shedding on: accepted p99 {median_p99 * 1000:.0f} ms, "
            f"shed p99 {median_shed * 1000:.0f} ms; goal (accepted p99 <= 1 s, shed answered fast) "
            f"{'met' if goal else 'NOT met'} on the median, in {sum(met)} of {len(ons)} rounds"
        )
        emit(
            args.json,
            work=f"overload: GET {args.path} at {args.factor:g}x capacity, shedding on",
            goal="accepted p99 <= 1000 ms",
            figure=f"p99 {median_p99 * 1000:.0f} ms (shed p99 {median_shed * 1000:.0f} ms)",
            ratio=round(1.0 / median_p99, 3) if median_p99 > 0 else None,
            script="overload.py",
        )
    finally:
        for p in procs:
            stop(p)
        if args.pg:
            asyncio.run(pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        tmp.cleanup()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_load":
        load_main(json.loads(sys.argv[2]))
    else:
        main()
