"""Provider notifications verified and applied per second, per provider, on PostgreSQL over HTTP.

    .venv/bin/python bench/payments_notify.py [--orders 2000] [--rounds 3] [--concurrency 64]
        [--workers 2] [--port 8790] [--providers wechat_v2,wechat_v3,alipay]

Environment: ``BENCH_PG`` the admin DSN (default ``postgresql://postgres@127.0.0.1:5432/postgres``),
used only to create and drop a scratch database ``wojia_bench_<random>`` (built from the migrations;
nothing is written anywhere else); ``BENCH_REDIS`` the Redis URL (default db 13, which the tests do
not use).

Starts the API with uvicorn (``--workers`` processes, sandbox payments with this run's own keys,
the embedded job worker, so the columns are told in the same processes). For each round and
provider (the providers' order alternates between rounds) it opens N orders, has the protocol
sandboxes sign one genuine notification per order (WeChat Pay v2 HMAC-SHA256, v3 RSA-SHA256 with an
AES-GCM resource, Alipay RSA2) and posts them over loopback HTTP/1.1 keep-alive connections, C at a
time, from this process (a small asyncio client; it shares the machine's cores with the server and
PostgreSQL, and its CPU time is printed). Each notification is verified, stored once, applied (order
locked, event, audit chain, outbox) and acknowledged; a quarter is then sent again (must change
nothing). Timed: the first pass, and until every column was told (``column_notified_at`` set).
Checked after each round: every order paid once, every column told once, no failure answers.

Prints each round, then per provider the median of the rounds and its ratio to the goal (1,000/s).
Figures, not a pass/fail test.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL_PER_S = 1000.0
PURPOSE = "bench.bill"
PROVIDERS = ("wechat_v2", "wechat_v3", "alipay")


def server_app() -> Any:
    """The uvicorn factory: the API, plus a paid handler for the bench's purpose (it does nothing)."""
    from app_api.wiring.app import create_app
    from payments.hooks import on_paid
    from payments.router import router_all

    @on_paid(PURPOSE)
    async def paid(session: Any, purpose: Any) -> None:
        return None

    application = create_app()
    if not any(getattr(r, "path", "") == "/api/v1/payments/notify/{provider}" for r in application.routes):
        application.include_router(router_all, prefix="/api/v1")
    return application


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--orders", type=int, default=2000, help="notifications per provider per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=64, help="connections posting at once")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--port", type=int, default=int(os.environ.get("BENCH_PORT", "8790")))
    p.add_argument("--providers", default=",".join(PROVIDERS))
    p.add_argument(
        "--admin-dsn", default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    p.add_argument("--redis", default=os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/13"))
    args = p.parse_args()
    args.providers = [x for x in args.providers.split(",") if x]
    unknown = set(args.providers) - set(PROVIDERS)
    if unknown:
        p.error(f"unknown providers: {', '.join(sorted(unknown))}")
    if args.admin_dsn.rstrip("/").rsplit("/", 1)[-1] == "test":
        p.error("the admin DSN must not be the shared `test` database (BENCH_PG)")
    return args


async def admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- the load generator: HTTP/1.1 keep-alive, one request in flight per connection --------------


@dataclass
class Posted:
    ok: int = 0
    failed: int = 0


async def post_all(
    port: int, requests: list[tuple[str, bytes, dict[str, str]]], concurrency: int, ok: Any
) -> Posted:
    it = iter(requests)
    result = Posted()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for path, body, headers in it:
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                start = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
                writer.write(f"{start}{head}\r\n".encode() + body)
                status_line = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                answer = await reader.readexactly(length) if length else b""
                status = int(status_line.split()[1])
                if ok(status, answer):
                    result.ok += 1
                else:
                    result.failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(min(concurrency, len(requests)))))
    return result


def acknowledged(provider: str) -> Any:
    if provider == "wechat_v2":
        return lambda status, body: status == 200 and b"SUCCESS" in body
    if provider == "wechat_v3":
        return lambda status, body: status in (200, 204)
    return lambda status, body: status == 200 and body.strip() == b"success"


# -- orders and genuine notifications -----------------------------------------------------------


def sign_notifications(
    provider: str, boxes: Any, orders: list[dict[str, Any]]
) -> list[tuple[str, bytes, dict[str, str]]]:
    from app_api.core.clock import CHINA_TZ
    from app_api.core.money import fen_to_yuan
    from payments.sandbox.alipay_records import AlipayTrade
    from payments.sandbox.common import Delivery
    from payments.sandbox.wechat_v2_records import V2Order
    from payments.sandbox.wechat_v3_records import V3Order

    path = f"/api/v1/payments/notify/{provider}"
    out: list[tuple[str, bytes, dict[str, str]]] = []
    paid_at = dt.datetime.now(CHINA_TZ).replace(microsecond=0)
    for o in orders:
        if provider == "wechat_v2":
            box = boxes.wechat_v2
            merchant = next(iter(box.merchants.values()))
            order = V2Order(
                merchant=merchant,
                out_trade_no=o["out_trade_no"],
                prepay_id="wx",
                trade_type="JSAPI",
                total_fee=o["amount_fen"],
                body="水费",
                notify_url="",
                sign_type="HMAC-SHA256",
                openid="o1",
                state="SUCCESS",
                transaction_id=f"42{uuid.uuid4().int % 10**26:026d}",
                time_end=paid_at,
            )
            out.append((path, box.notification_for(order, Delivery()), {"Content-Type": "text/xml"}))
        elif provider == "wechat_v3":
            box = boxes.wechat_v3
            merchant = next(iter(box.merchants.values()))
            v3 = V3Order(
                merchant=merchant,
                out_trade_no=o["out_trade_no"],
                prepay_id="wx",
                trade_type="JSAPI",
                total=o["amount_fen"],
                description="水费",
                notify_url="",
                openid="o1",
                state="SUCCESS",
                transaction_id=f"42{uuid.uuid4().int % 10**26:026d}",
                success_time=paid_at,
            )
            body, headers = box._envelope(
                merchant, "TRANSACTION.SUCCESS", "支付成功", "transaction", box._transaction(v3), Delivery()
            )
            out.append((path, body, headers))
        else:
            box = boxes.alipay
            app = next(iter(box.apps.values()))
            trade = AlipayTrade(
                app=app,
                out_trade_no=o["out_trade_no"],
                trade_no=f"2025{uuid.uuid4().int % 10**24:024d}",
                total_fen=o["amount_fen"],
                subject="水费",
                notify_url="",
                product_code="JSAPI_PAY",
                status="TRADE_SUCCESS",
                gmt_payment=paid_at,
            )
            note = box._notification(
                trade,
                {
                    "trade_status": "TRADE_SUCCESS",
                    "gmt_payment": paid_at.strftime("%Y-%m-%d %H:%M:%S"),
                    "receipt_amount": fen_to_yuan(o["amount_fen"]),
                },
                Delivery(),
            )
            out.append((path, note.body, dict(note.headers)))
    return out


async def open_orders(provider: str, n: int, account_id: str, merchant_id: str) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from app_api.core.db import new_id, session_scope, utcnow
    from payments.ledger import new_out_trade_no, purpose_key
    from payments.models import ORDERS

    now = utcnow()
    rows = []
    for i in range(n):
        ref = f"{provider}-{secrets.token_hex(6)}-{i}"
        rows.append(
            {
                "id": new_id(),
                "out_trade_no": (new_out_trade_no() + f"{i:05d}")[:32],
                "account_id": account_id,
                "purpose": PURPOSE,
                "purpose_ref": ref,
                "purpose_key": purpose_key(PURPOSE, ref),
                "description": "水费",
                "amount_fen": 100 + i % 5000,
                "provider": provider,
                "merchant_id": merchant_id,
                "channel": "miniprogram",
                "status": "paying",
                "refunded_fen": 0,
                "expires_at": now + dt.timedelta(hours=1),
                "created_at": now,
                "updated_at": now,
            }
        )
    async with session_scope() as s:
        await s.exec(sa.insert(ORDERS), params=rows)
    return rows


async def counts(order_ids: list[str]) -> tuple[int, int, int]:
    """(orders paid, orders whose column was told, column_notified events) among ``order_ids``."""
    import sqlalchemy as sa

    from app_api.core.db import session_scope
    from payments.models import EVENTS, ORDERS

    async with session_scope() as s:
        conn = await s.connection()
        paid, told = (
            await conn.execute(
                sa.select(
                    sa.func.count().filter(ORDERS.c.status == "paid"),
                    sa.func.count().filter(ORDERS.c.column_notified_at.is_not(None)),
                ).where(ORDERS.c.id.in_(order_ids))
            )
        ).one()
        events = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    EVENTS.c.order_id.in_(order_ids), EVENTS.c.kind == "column_notified"
                )
            )
        ).scalar_one()
    return int(paid), int(told), int(events)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def server_pids(root: int) -> list[int]:
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        todo.extend(int(c) for c in children)
    return found


async def wait_until_up(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server stopped at start-up (exit {proc.returncode})")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            line = await reader.readline()
            writer.close()
            if line.startswith(b"HTTP/1.1 200"):
                return
        except OSError:
            pass
        await asyncio.sleep(0.5)
    raise SystemExit("the server did not answer within 3 minutes")


async def run(args: argparse.Namespace, proc: subprocess.Popen[bytes]) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from payments.config import get_payments_settings
    from payments.registry import build_sandbox_providers
    from payments.sandbox.keys import load_or_create

    keys = load_or_create(get_payments_settings().sandbox_keys_file)
    _providers, boxes = build_sandbox_providers(f"http://127.0.0.1:{args.port}/sandbox/payments", keys)
    merchants = {"wechat_v2": keys.v2_mch_id, "wechat_v3": keys.v3_mchid, "alipay": keys.alipay_pid}
    async with session_scope() as s:
        account = Account(phone_hash=secrets.token_hex(16), phone_enc=b"x")
        s.add(account)
    await wait_until_up(args.port, proc)
    # Warm-up: each worker's first notification of a provider imports its SDK modules.
    for provider in args.providers:
        warm = await open_orders(provider, 4 * args.workers, account.id, merchants[provider])
        await post_all(
            args.port, sign_notifications(provider, boxes, warm), 2 * args.workers, acknowledged(provider)
        )

    pids = server_pids(proc.pid)
    print(
        f"server: uvicorn, {args.workers} workers (pids {', '.join(map(str, pids))}), port {args.port}, "
        f"embedded job worker; client: this process, {args.concurrency} keep-alive connections; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    figures: dict[str, list[tuple[float, float]]] = {p: [] for p in args.providers}
    for round_no in range(args.rounds):
        order = args.providers if round_no % 2 == 0 else list(reversed(args.providers))
        for provider in order:
            rows = await open_orders(provider, args.orders, account.id, merchants[provider])
            requests = sign_notifications(provider, boxes, rows)
            ids = [r["id"] for r in rows]
            ok = acknowledged(provider)
            server_cpu0, client_cpu0 = cpu_seconds(pids), time.process_time()
            start = time.perf_counter()
            first = await post_all(args.port, requests, args.concurrency, ok)
            elapsed = time.perf_counter() - start
            server_cpu, client_cpu = cpu_seconds(pids) - server_cpu0, time.process_time() - client_cpu0
            while True:
                paid, told, _events = await counts(ids)
                if told >= len(ids) or time.perf_counter() - start > 300:
                    break
                await asyncio.sleep(0.05)
            told_elapsed = time.perf_counter() - start
            dup_start = time.perf_counter()
            repeat = await post_all(args.port, requests[: len(requests) // 4], args.concurrency, ok)
            dup_elapsed = time.perf_counter() - dup_start
            await asyncio.sleep(0.5)  # a (wrong) second hand-off would have run by now
            paid, told, events = await counts(ids)
            n = len(requests)
            figures[provider].append((n / elapsed, n / told_elapsed))
            right = paid == told == events == n and not first.failed and not repeat.failed
            print(
                f"round {round_no + 1} {provider:9s} {n / elapsed:7.1f}/s acknowledged "
                f"({n} in {elapsed:.2f}s; failures {first.failed}), "
                f"every column told {n / told_elapsed:7.1f}/s; "
                f"server CPU {server_cpu / n * 1000:.2f} ms, client CPU {client_cpu / n * 1000:.2f} ms per "
                f"notification; repeats {repeat.ok}/{len(requests) // 4} acknowledged in {dup_elapsed:.2f}s; "
                f"paid {paid}/{n}, told {told}/{n} with {events} hand-off events"
                + ("" if right else "  << WRONG")
            )
    print()
    bench_lines: list[dict[str, object]] = []
    print(
        f"{'provider':10s} {'acknowledged/s (median)':>24s} {'ratio to 1,000/s':>17s} {'column told/s':>14s}"
    )
    for provider, rows_ in figures.items():
        acked = statistics.median(r[0] for r in rows_)
        told_ = statistics.median(r[1] for r in rows_)
        print(f"{provider:10s} {acked:24.1f} {acked / GOAL_PER_S:17.2f} {told_:14.1f}")
        bench_lines.append(
            {
                "work": f"payment notifications, {provider} ({args.workers} workers)",
                "goal": f">= {GOAL_PER_S:,.0f}/s",
                "figure": f"{acked:,.0f}/s",
                "ratio": round(acked / GOAL_PER_S, 3),
            }
        )
    print(
        f"(median of {args.rounds} rounds of {args.orders}; the client, the {args.workers} workers and "
        "PostgreSQL share the machine's cores)"
    )
    for line in bench_lines:  # make bench's table (bench/report.py)
        print("BENCH " + json.dumps(line, ensure_ascii=False))


def main() -> None:
    args = parse_args()
    db = f"wojia_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_dsn.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
    var_dir = tempfile.mkdtemp(prefix="wojia-bench-")
    os.environ.update(
        WOJIA_ENVIRONMENT="test",
        WOJIA_DATABASE_URL=f"{base}/{db}",
        WOJIA_REDIS_URL=args.redis,
        WOJIA_JOBS_EMBEDDED="true",
        WOJIA_LOG_JSON="false",
        WOJIA_VAR_DIR=var_dir,
        WOJIA_PAYMENTS_MODE="sandbox",
        WOJIA_PAYMENTS_SANDBOX_KEYS_FILE=str(Path(var_dir) / "payments_keys.json"),
        WOJIA_PUBLIC_BASE_URL=f"http://127.0.0.1:{args.port}",
    )
    import logging

    logging.disable(logging.WARNING)
    asyncio.run(admin(args.admin_dsn, f'CREATE DATABASE "{db}"'))
    proc: subprocess.Popen[bytes] | None = None
    try:
        from app_api.wiring.migrate import upgrade

        upgrade()
        log_file = (Path(var_dir) / "server.log").open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bench.payments_notify:server_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.port),
                "--workers",
                str(args.workers),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        print(f"server log: {log_file.name}")
        asyncio.run(run(args, proc))
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        asyncio.run(admin(args.admin_dsn, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
