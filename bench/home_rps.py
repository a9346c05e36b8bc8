"""Requests per second of GET /api/v1/home for a logged-in resident, beside a bare FastAPI
hello-world (bench/hello_app.py) served the same way (uvicorn, the same worker count, the same
cores) in the same run, on PostgreSQL and Redis.

The two servers are measured alternately (hello, home, hello, home, ...; the other one paused) and
the ratio reported is the median of the per-round ratios. Goal (issue 19): at least 0.6.
See bench/_harness.py for the CPU plan, the scratch database and the load generator (wrk).

Usage: .venv/bin/python bench/home_rps.py [--rounds 3] [--seconds 10] [--connections 64]
       [--workers 2] [--hello-port P] [--api-port P] [--no-pin] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    REDIS,
    Load,
    Server,
    Side,
    add_common_args,
    alternate,
    api_env,
    cpu_plan,
    emit,
    migrate,
    need_wrk,
    running,
    scratch_database,
    wrk,
)

GOAL = 0.6


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_common_args(ap)
    ap.add_argument("--hello-port", type=int, default=0, help="0: a free port")
    ap.add_argument("--api-port", type=int, default=0, help="0: a free port")
    args = ap.parse_args()
    need_wrk()
    plan = cpu_plan(args.no_pin)
    with scratch_database() as database_url:
        # Load shedding stays on, with room for every connection: the bench measures throughput,
        # not what the api answers beyond its limit (bench/overload.py does).
        env = api_env(database_url, REDIS, WOJIA_MAX_IN_FLIGHT=str(max(16, args.connections)))
        migrate(env)
        token = asyncio.run(make_token(env))
        hello = Server("bench.hello_app:app", env, args.workers, plan, args.hello_port, health="/hello")
        api = Server("app_api.wiring.main:app", env, args.workers, plan, args.api_port)
        with running(hello, api):
            home_url = f"{api.base}/api/v1/home"
            auth = {"Authorization": f"Bearer {token}"}
            r = httpx.get(home_url, headers=auth)
            assert r.status_code == 200 and r.json()["categories"], r.text

            def measure(url: str, headers: dict[str, str] | None = None) -> Callable[[], Load]:
                return lambda: wrk(
                    url,
                    seconds=args.seconds,
                    connections=args.connections,
                    plan=plan,
                    headers=headers,
                )

            result = alternate(
                [
                    Side("hello", hello, measure(f"{hello.base}/hello")),
                    Side("home", api, measure(home_url, auth)),
                ],
                args.rounds,
            )
    ratios = result.ratios("home", "hello")
    ratio = result.median_ratio("home", "hello")
    print(f"hello-world : median {result.median_rps('hello'):8.0f} req/s")
    print(
        f"GET /home   : median {result.median_rps('home'):8.0f} req/s"
        "  (logged-in resident, PostgreSQL + Redis)"
    )
    print(
        f"ratio home/hello per round: {', '.join(f'{x:.2f}' for x in ratios)}; "
        f"median {ratio:.2f} (goal >= {GOAL})"
    )
    print(
        f"[{args.workers} uvicorn worker(s) per server; wrk -c{args.connections} -d{args.seconds}s; "
        f"{args.rounds} alternating round(s); WOJIA_MAX_IN_FLIGHT={max(16, args.connections)}; "
        f"{plan.label()}; {os.cpu_count()} cpus on the machine]"
    )
    emit(
        args.json,
        work=f"GET /api/v1/home vs hello-world ({args.workers} workers, PG + Redis)",
        goal=f">= {GOAL}x hello",
        figure=f"{ratio:.2f}x ({result.median_rps('home'):.0f} vs {result.median_rps('hello'):.0f} req/s)",
        ratio=round(ratio / GOAL, 3),
        script="home_rps.py",
        rounds=[{k: v.rps for k, v in row.items()} for row in result.rounds],
    )


if __name__ == "__main__":
    main()
