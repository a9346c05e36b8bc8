"""The api process's footprint: how long ``import app_api.wiring.main`` takes (the module uvicorn
imports in every worker) and how much memory a served api worker holds when idle.

Import time is measured in fresh interpreters, several rounds, median reported (wall and CPU; on a
shared machine the CPU figure is the steadier one). Idle memory: ``wojia serve --workers N`` on a
free port, /healthz and /api/v1/home asked a few times, then, after a pause, the resident set
size of every process of the server read from /proc (Linux): each api worker, the supervisor when
there is one, and any face-engine process (there should be none: they start on the first face
check). Goals (issue 19): import <= 3 s, idle RSS <= 150 MB per api worker. Figures, not pass/fail.

Bytecode: as in the image (``UV_COMPILE_BYTECODE=1``) and ``make run`` (which unexports
``PYTHONDONTWRITEBYTECODE``), modules load from compiled bytecode: the measured processes write and
read it under a private ``PYTHONPYCACHEPREFIX`` in the temporary directory (nothing written into the
checkout or the venv), warmed by one unmeasured import. ``--no-bytecode-cache`` measures instead
every module compiled from source, as a shell with ``PYTHONDONTWRITEBYTECODE=1`` and no caches does.

Idle memory is read in three configurations, alternated (A, B, C, A, B, C, ...) for
``--idle-rounds`` rounds (default 3), the median of each reported beside its range:

- **development, embedded default**: a fresh SQLite file in a temporary directory and the in-process
  Redis stand-in (``make run``; the development sandboxes are mounted, built on first request);
- **development, PostgreSQL + Redis**: a scratch database made from ``BENCH_PG`` and ``BENCH_REDIS``;
- **production, PostgreSQL + Redis**: the same with ``WOJIA_ENVIRONMENT=production`` and the
  settings production refuses to start without (placeholder secrets, provider and biller URLs
  nobody calls while idle; no sandboxes).

``--database-url`` / ``--redis-url`` replace the embedded default of the first configuration (never
the shared ``test`` database: name your own); ``--no-production-backends`` measures only the first.

Usage: .venv/bin/python bench/process_footprint.py [--rounds 5] [--idle-rounds 3] [--workers 2]
       [--database-url postgresql+asyncpg://...] [--redis-url redis://127.0.0.1:6379/N]
       [--no-production-backends] [--root PATH]  (--root: another checkout, e.g. a baseline)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench._harness import REDIS, emit, json_requested, scratch_database  # noqa: E402

ENTRY = "app_api.wiring.main"
IMPORT_GOAL_S = 3.0
RSS_GOAL_MB = 150.0

_IMPORT = f"""
import time
w, c = time.perf_counter(), time.process_time()
import {ENTRY}
print(time.perf_counter() - w, time.process_time() - c)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def production_settings() -> dict[str, str]:
    """What ``WOJIA_ENVIRONMENT=production`` refuses to start without: fresh placeholder secrets and
    external URLs (nothing is called while the api idles), payments in live mode with one merchant."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()

    def token() -> str:
        return secrets.token_hex(24)

    biller = {
        "code": "water",
        "kind": "water",
        "name": "亳州水务",
        "base_url": "https://water.example.cn",
        "secret": token(),
    }
    return {
        "WOJIA_ENVIRONMENT": "production",
        "WOJIA_PUBLIC_BASE_URL": "https://wojia.example.cn",
        "WOJIA_METRICS_TOKEN": token(),
        "WOJIA_SECRET_KEY": token(),
        "WOJIA_DATA_KEYS": f"p1:{key}",
        "WOJIA_LOOKUP_KEY": token(),
        "WOJIA_BOT_ACTION_TOKEN": token(),
        "WOJIA_BOT_SENDER_KEY": token(),
        "WOJIA_MP_WECHAT_APP_SECRET": token(),
        "WOJIA_IDENTITY_REAL_PERSON_URL": "https://realperson.example.cn",
        "WOJIA_IDENTITY_REAL_PERSON_SECRET": token(),
        "WOJIA_IDENTITY_TENCENT_FACEID_SECRET_KEY": token(),
        "WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL": "https://postal.example.cn",
        "WOJIA_COLUMN_GOV_SERVICES_POSTAL_SECRET": token(),
        "WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL": "https://fund.example.cn",
        "WOJIA_COLUMN_PROVIDENT_FUND_SECRET": token(),
        "WOJIA_COLUMN_UTILITIES_BILLERS": json.dumps([biller], ensure_ascii=False),
        "WOJIA_PAYMENTS_MODE": "live",
        "WOJIA_PAYMENTS_WECHAT_V2__APPID": "wx0000000000000000",
        "WOJIA_PAYMENTS_WECHAT_V2__MCH_ID": "1900000109",
        "WOJIA_PAYMENTS_WECHAT_V2__API_KEY": secrets.token_hex(16),
    }


def measure_import(env: dict[str, str], root: Path, rounds: int, warm: bool) -> tuple[float, float]:
    walls, cpus = [], []
    if warm:  # fills the bytecode cache; not measured
        subprocess.run([sys.executable, "-c", _IMPORT], env=env, cwd=root, capture_output=True, check=True)
    for _ in range(rounds):
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT], env=env, cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
        walls.append(float(out[-2]))
        cpus.append(float(out[-1]))
    return statistics.median(walls), statistics.median(cpus)


def measure_idle(env: dict[str, str], root: Path, workers: int, settle_s: float) -> list[tuple[str, float]]:
    """(role, RSS in MB) of every process of an idle, served api."""
    subprocess.run(
        [sys.executable, "-m", "app_api.wiring.cli", "db", "upgrade"],
        env=env,
        cwd=root,
        check=True,
        capture_output=True,
    )
    port = free_port()
    cmd = [sys.executable, "-m", "app_api.wiring.cli", "serve", "--port", str(port), "--no-migrate"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([*cmd, "--workers", str(workers)], env=env, cwd=root, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"wojia serve did not come up:\n{log.read().decode()[-3000:]}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            # Every worker answers at least once (connections are spread across them).
            for _ in range(10 * workers):
                for path in ("/healthz", "/api/v1/home"):
                    r = httpx.get(base + path, timeout=10)
                    if r.status_code != 200:
                        raise SystemExit(f"{path}: {r.status_code} {r.text[:200]}")
            time.sleep(settle_s)
            out: list[tuple[str, float]] = []
            api = children(proc.pid) if workers > 1 else [proc.pid]
            if workers > 1:
                out.append(("supervisor", rss_mb(proc.pid)))
            for pid in api:
                if "multiprocessing.resource_tracker" in cmdline(pid):
                    out.append(("multiprocessing helper", rss_mb(pid)))
                    continue
                out.append(("api worker", rss_mb(pid)))
                for child in children(pid):
                    spawned = "multiprocessing.spawn" in cmdline(child)
                    out.append(("face engine" if spawned else "other child", rss_mb(child)))
            return out
        finally:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="fresh interpreters for the import time")
    ap.add_argument("--idle-rounds", type=int, default=3, help="idle readings per configuration (median)")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn workers of the served api")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle before reading memory")
    ap.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    ap.add_argument("--redis-url", default="", help="default: the in-process stand-in")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure")
    ap.add_argument(
        "--no-production-backends",
        action="store_true",
        help="only the first configuration: skip the two on PostgreSQL (a scratch database from "
        "BENCH_PG) and Redis (BENCH_REDIS), development and production",
    )
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="compile every module from source in every process (default: a private bytecode cache)",
    )
    ap.add_argument("--json", action="store_true", default=json_requested(), help="print final BENCH lines")
    args = ap.parse_args()
    if args.database_url and args.database_url.rsplit("/", 1)[-1].split("?")[0] == "test":
        raise SystemExit("refusing the shared 'test' database: name a database of your own")

    root = args.root.resolve()
    first = (
        "development, PostgreSQL + Redis (given)"
        if args.database_url
        else "development, embedded default: SQLite + in-process Redis stand-in"
    )
    # label -> readings, one per round: [(role, MB), ...]
    readings: dict[str, list[list[tuple[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="wojia-footprint-") as tmp, contextlib.ExitStack() as stack:
        env = {
            **os.environ,
            "PYTHONPATH": str(root),
            "WOJIA_ENVIRONMENT": "development",
            "WOJIA_VAR_DIR": tmp,
            "WOJIA_DATABASE_URL": args.database_url or f"sqlite+aiosqlite:///{tmp}/footprint.db",
            "WOJIA_REDIS_URL": args.redis_url or "memory://",
            "WOJIA_LOG_JSON": "false",
        }
        if args.no_bytecode_cache:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        wall, cpu = measure_import(env, root, args.rounds, warm=not args.no_bytecode_cache)
        configurations = {first: env}
        if not args.database_url and not args.no_production_backends:
            url = stack.enter_context(scratch_database())
            pg_env = {**env, "WOJIA_DATABASE_URL": url, "WOJIA_REDIS_URL": args.redis_url or REDIS}
            configurations["development, PostgreSQL + Redis"] = pg_env
            prod_url = stack.enter_context(scratch_database())
            configurations["production, PostgreSQL + Redis"] = {
                **pg_env,
                "WOJIA_DATABASE_URL": prod_url,
                "WOJIA_VAR_DIR": f"{tmp}/production",
                **production_settings(),
            }
        for _ in range(max(1, args.idle_rounds)):
            for label, cfg in configurations.items():
                readings.setdefault(label, []).append(measure_idle(cfg, root, args.workers, args.settle))
    load = os.getloadavg()
    print(f"checkout: {root}")
    cache = "none (compiled from source)" if args.no_bytecode_cache else "private cache, warmed"
    print(f"bytecode: {cache}")
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print()

    def row(name: str, value: float, goal: float) -> None:
        print(f"{name:<60}{value:>10.2f}{goal:>10.1f}{value / goal:>8.2f}")

    print(f"{'figure':<60}{'value':>10}{'goal':>10}{'ratio':>8}")
    row(f"import {ENTRY} wall, s (median of {args.rounds})", wall, IMPORT_GOAL_S)
    row(f"import {ENTRY} CPU, s (median of {args.rounds})", cpu, IMPORT_GOAL_S)
    emit(
        args.json,
        work=f"API import ({ENTRY}, median of {args.rounds})",
        goal=f"<= {IMPORT_GOAL_S:g} s",
        figure=f"{wall:.2f} s wall, {cpu:.2f} s CPU",
        ratio=round(IMPORT_GOAL_S / wall, 3) if wall > 0 else None,
        script="process_footprint.py",
    )
    for label, rounds in readings.items():
        largest = [max((mb for role, mb in r if role == "api worker"), default=0.0) for r in rounds]
        faces = max(sum(role == "face engine" for role, _ in r) for r in rounds)
        rss = statistics.median(largest)
        print()
        print(f"{label}: idle RSS per api worker, largest of {args.workers}, per round:")
        print("  " + ", ".join(f"{mb:.1f}" for mb in largest) + f" MB; face-engine processes idle: {faces}")
        for role, mb in rounds[-1]:
            print(f"    last round: {role:<24}{mb:>8.1f} MB")
        row(f"  idle RSS per api worker, MB (median of {len(rounds)})", rss, RSS_GOAL_MB)
        # ratio: goal over figure (the smaller the figure the better; >= 1 is met)
        emit(
            args.json,
            work=f"idle RSS per api worker ({args.workers} workers, largest, "
            f"median of {len(rounds)}; {label})",
            goal=f"<= {RSS_GOAL_MB:g} MB",
            figure=f"{rss:.0f} MB ({min(largest):.0f}-{max(largest):.0f}); "
            f"face-engine processes idle: {faces}",
            ratio=round(RSS_GOAL_MB / rss, 3) if rss > 0 else None,
            script="process_footprint.py",
        )


if __name__ == "__main__":
    main()
