"""Bill listing (GET /api/v1/columns/utilities/bills) for a resident with 10 bound accounts, with
the biller sandboxes in the loop over loopback HTTP (each listing asks every biller of every bound
account; the column asks them concurrently).

Prints p50/p95/p99 of the listing beside the p95 of one direct biller query, for each simulated
biller latency, sequentially and with concurrent residents. The app is served by uvicorn in this
process; the billers by uvicorn in a thread. SQLite by default; PostgreSQL and Redis with
``--pg`` (uses BENCH_PG / BENCH_REDIS).

Usage: .venv/bin/python bench/utilities_bill_listing.py [--requests 200] [--latency-ms 0,50] [--pg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_BASE = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13")
SECRET = "bench-biller-" + secrets.token_hex(4)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, biller_url: str) -> None:
    import uvicorn

    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import get_or_create_resident
    from app_api.platform.accounts.tokens import issue_pair
    from app_api.wiring.app import create_app
    from columns.utilities.adapters import HttpJsonBiller
    from columns.utilities.config import get_config
    from payments.sandbox.common import free_port

    sandboxes = ("water", "power", "gas")
    os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = json.dumps(
        [
            {"code": c, "kind": c, "name": c, "base_url": f"{biller_url}/{c}", "secret": SECRET}
            for c in sandboxes
        ]
    )
    get_config.cache_clear()

    app = create_app()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}/api/v1/columns/utilities"

    import datetime as dt

    residents = []
    water_acct = ""
    for r in range(args.residents):
        async with session_scope() as s:
            account, _ = await get_or_create_resident(s, phone="139" + f"{secrets.randbelow(10**8):08d}")
            pair = await issue_pair(s, account.id)
        headers = {"Authorization": f"Bearer {pair.access_token}"}
        async with httpx.AsyncClient(timeout=30) as c:
            for i in range(10):  # 4 water, 3 power, 3 gas accounts
                code = ("water", "power", "gas")[0 if i < 4 else 1 if i < 7 else 2]
                acct = f"B{r:03d}{i:02d}{secrets.randbelow(10**6):06d}"
                (
                    await c.post(
                        f"{biller_url}/{code}/_sandbox/accounts",
                        json={
                            "account_no": acct,
                            "holder_name": "王淑芬",
                            "address": "谯城区",
                            "bills": [
                                {
                                    "bill_no": f"{acct}-{m}",
                                    "period": f"2026-{m}",
                                    "amount_fen": 2000 + 37 * i + m,
                                    "due_date": (dt.date.today() + dt.timedelta(days=m)).isoformat(),
                                }
                                for m in (10, 11)
                            ],
                        },
                    )
                ).raise_for_status()
                if code == "water":
                    water_acct = acct
                resp = await c.post(
                    f"{base}/bindings",
                    headers=headers,
                    json={"biller_code": code, "account_no": acct, "holder_name": "王淑芬"},
                )
                resp.raise_for_status()
        residents.append(headers)

    direct = HttpJsonBiller(get_config().billers[0])
    backend = "PostgreSQL+Redis" if args.pg else "SQLite+in-process Redis"
    figures: list[tuple[int, int, float, float]] = []
    print(f"backend: {backend}; {args.requests} listings; 10 bound accounts (20 bills) per resident")
    print(
        f"{'biller latency':>15} {'mode':>14} {'direct p95':>11} {'list p50':>9} {'list p95':>9} "
        f"{'list p99':>9} {'p95/direct':>10} {'req/s':>7}"
    )
    async with httpx.AsyncClient(timeout=60) as c:
        for latency_ms in args.latency_ms:
            for code in sandboxes:
                (
                    await c.post(f"{biller_url}/{code}/_sandbox/latency", json={"ms": latency_ms})
                ).raise_for_status()
            d = []
            for _ in range(min(50, args.requests)):
                t = time.perf_counter()
                await direct.outstanding_bills(account_no=water_acct)
                d.append(time.perf_counter() - t)
            for concurrency in (1, args.concurrency):
                times: list[float] = []

                async def one(headers: dict[str, str], times: list[float] = times) -> None:
                    t = time.perf_counter()
                    resp = await c.get(f"{base}/bills", headers=headers)
                    times.append(time.perf_counter() - t)
                    assert resp.status_code == 200 and len(resp.json()["accounts"]) == 10, resp.text

                await one(residents[0])  # warm
                times.clear()
                start = time.perf_counter()
                for batch in range(0, args.requests, concurrency):
                    n = min(concurrency, args.requests - batch)
                    await asyncio.gather(*(one(residents[(batch + k) % len(residents)]) for k in range(n)))
                wall = time.perf_counter() - start
                dp95 = pct(d, 95) * 1000
                p95 = pct(times, 95) * 1000
                figures.append((latency_ms, concurrency, p95, dp95))
                print(
                    f"{latency_ms:>13}ms {f'{concurrency} at once':>14} {dp95:>9.1f}ms "
                    f"{pct(times, 50) * 1000:>7.1f}ms {p95:>7.1f}ms {pct(times, 99) * 1000:>7.1f}ms "
                    f"{p95 / dp95:>10.1f} {len(times) / wall:>7.1f}"
                )
    print(f"mean listing at the last setting: {statistics.mean(times) * 1000:.1f} ms")
    for latency_ms, concurrency, p95, dp95 in figures:
        line = {
            "work": (
                f"bill listing, 10 bound accounts, billers {latency_ms} ms, {concurrency} at once ({backend})"
            ),
            "goal": "none set (figures)",
            "figure": f"p95 {p95:.1f} ms (one biller query p95 {dp95:.1f} ms)",
        }
        print("BENCH " + json.dumps(line, ensure_ascii=False))
    server.should_exit = True
    await serving


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--residents", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--latency-ms", type=lambda s: [int(x) for x in s.split(",")], default=[0, 50])
    ap.add_argument("--pg", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wojia-bench-"))
    os.environ.update(
        {
            "WOJIA_ENVIRONMENT": "development",
            "WOJIA_VAR_DIR": str(tmp),
            "WOJIA_JOBS_EMBEDDED": "true",
            "WOJIA_LOG_JSON": "true",
            "WOJIA_LOG_LEVEL": "WARNING",
        }
    )
    db = None
    if args.pg:
        import asyncpg

        db = f"wojia_bench_{secrets.token_hex(4)}"
        admin = PG_BASE.replace("postgresql+asyncpg://", "postgresql://")

        async def pg(sql: str) -> None:
            conn = await asyncpg.connect(admin)
            await conn.execute(sql)
            await conn.close()

        asyncio.run(pg(f'CREATE DATABASE "{db}"'))
        os.environ["WOJIA_DATABASE_URL"] = PG_BASE.rsplit("/", 1)[0] + f"/{db}"
        os.environ["WOJIA_REDIS_URL"] = REDIS
    else:
        os.environ["WOJIA_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    from app_api.wiring.migrate import upgrade
    from payments.sandbox.common import free_port

    upgrade()
    # The billers run in their own process, as a remote system would.
    bport = free_port()
    biller = subprocess.Popen(
        [sys.executable, "-m", "columns.utilities.sandbox", "--port", str(bport), "--secret", SECRET],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        biller_url = f"http://127.0.0.1:{bport}"
        for _ in range(100):
            try:
                httpx.get(f"{biller_url}/water/_sandbox/payments", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        asyncio.run(run(args, biller_url))
    finally:
        biller.terminate()
        biller.wait(10)
        if db:
            asyncio.run(pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
