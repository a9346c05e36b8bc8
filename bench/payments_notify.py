"""Notifications verified and applied per second (WeChat Pay v2 and Alipay) on PostgreSQL.

    .venv/bin/python bench/payments_notify.py [--orders 2000] [--concurrency 32] [--database-url ...]

Creates a scratch PostgreSQL database from the migrations, opens N orders per provider, has the
sandboxes sign one genuine notification per order (HMAC-SHA256 for v2, RSA2 for Alipay), then posts
them to the app's notify endpoint in-process (httpx ASGI transport, no sockets) with C at a time.
Each one is verified with the real SDK code path, stored once, applied (order locked, event,
audit chain, outbox), and after commit the column's paid handler runs through the embedded worker.
Prints notifications/s per provider and the share of duplicates sent in a second pass (which must
change nothing). Figures, not a pass/fail test. Goal: at least 300/s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--orders", type=int, default=2000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    return p.parse_args()


async def admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def main(args: argparse.Namespace, base_url: str) -> None:
    import datetime as dt
    import logging

    import httpx
    import sqlalchemy as sa
    from asgi_lifespan import LifespanManager
    from sqlmodel import select

    from app_api.core.clock import CHINA_TZ
    from app_api.core.db import new_id, session_scope, utcnow
    from app_api.core.money import fen_to_yuan
    from app_api.platform.accounts.models import Account
    from app_api.wiring.app import create_app
    from payments import registry
    from payments.hooks import on_paid
    from payments.ledger import new_out_trade_no, purpose_key
    from payments.models import PaymentOrder
    from payments.providers.alipay import AlipayConfig, AlipayProvider
    from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config
    from payments.router import router_all
    from payments.sandbox.alipay import AlipaySandbox
    from payments.sandbox.alipay_records import AlipayTrade
    from payments.sandbox.common import Delivery
    from payments.sandbox.wechat_v2 import WeChatPayV2Sandbox
    from payments.sandbox.wechat_v2_records import V2Order

    told: list[str] = []
    all_told = asyncio.Event()
    told_target = [0]

    @on_paid("bench.bill")
    async def paid(session, purpose) -> None:  # type: ignore[no-untyped-def]
        told.append(purpose.order_id)
        if len(told) >= told_target[0]:
            all_told.set()

    v2, ali = WeChatPayV2Sandbox(), AlipaySandbox()
    merchant, app_ = v2.add_merchant(), ali.add_app()
    providers = {
        "wechat_v2": WeChatPayV2Provider(
            WeChatV2Config(appid=merchant.appid, mch_id=merchant.mch_id, api_key=merchant.api_key)
        ),
        "alipay": AlipayProvider(
            AlipayConfig(
                app_id=app_.app_id,
                app_private_key=app_.private_key_pkcs1,
                alipay_public_key=ali.alipay_public_key_pem,
                seller_id=app_.pid,
            )
        ),
    }
    registry.configure(providers, notify_base="http://bench")

    application = create_app()
    if not any(getattr(r, "path", "") == "/api/v1/payments/notify/{provider}" for r in application.routes):
        application.include_router(router_all, prefix="/api/v1")

    async with LifespanManager(application, startup_timeout=60):
        import payments.tasks  # noqa: F401

        async with session_scope() as s:
            account = Account(phone_hash=secrets.token_hex(16), phone_enc=b"x")
            s.add(account)
        now = utcnow()
        bodies: dict[str, list[tuple[str, bytes, dict[str, str]]]] = {}
        for name in ("wechat_v2", "alipay"):
            rows = []
            notes = []
            for i in range(args.orders):
                out = new_out_trade_no() + f"{i:05d}"[-5:]
                out = out[:32]
                amount = 100 + i % 5000
                rows.append(
                    {
                        "id": new_id(),
                        "out_trade_no": out,
                        "account_id": account.id,
                        "purpose": "bench.bill",
                        "purpose_ref": f"{name}-{i}",
                        "purpose_key": purpose_key("bench.bill", f"{name}-{i}"),
                        "description": "水费",
                        "amount_fen": amount,
                        "provider": name,
                        "channel": "miniprogram",
                        "status": "paying",
                        "refunded_fen": 0,
                        "expires_at": now + dt.timedelta(hours=1),
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                paid_at = dt.datetime.now(CHINA_TZ)
                if name == "wechat_v2":
                    order = V2Order(
                        merchant=merchant,
                        out_trade_no=out,
                        prepay_id="wx",
                        trade_type="JSAPI",
                        total_fee=amount,
                        body="水费",
                        notify_url="",
                        sign_type="HMAC-SHA256",
                        openid="o1",
                        state="SUCCESS",
                        transaction_id=f"42{uuid.uuid4().int % 10**26:026d}",
                        time_end=paid_at,
                    )
                    notes.append((out, v2.notification_for(order, Delivery()), {"content-type": "text/xml"}))
                else:
                    trade = AlipayTrade(
                        app=app_,
                        out_trade_no=out,
                        trade_no=f"2025{uuid.uuid4().int % 10**24:024d}",
                        total_fen=amount,
                        subject="水费",
                        notify_url="",
                        product_code="JSAPI_PAY",
                        status="TRADE_SUCCESS",
                        gmt_payment=paid_at,
                    )
                    amount_text = fen_to_yuan(amount)
                    note = ali._notification(
                        trade,
                        {
                            "trade_status": "TRADE_SUCCESS",
                            "gmt_payment": paid_at.strftime("%Y-%m-%d %H:%M:%S"),
                            "receipt_amount": amount_text,
                        },
                        Delivery(),
                    )
                    notes.append((out, note.body, dict(note.headers)))
            async with session_scope() as s:
                await s.exec(sa.insert(PaymentOrder.__table__), params=rows)  # type: ignore[call-overload]
            bodies[name] = notes

        # Warm up: first use imports SDK modules (the Alipay SDK is imported lazily).
        for name, notes in bodies.items():
            await providers[name].parse_notification(notes[0][2], notes[0][1])
        print(f"load average before timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for name, notes in bodies.items():
                sem = asyncio.Semaphore(args.concurrency)
                failures = 0

                async def post(
                    body: bytes, headers: dict[str, str], provider: str = name, sem: asyncio.Semaphore = sem
                ) -> None:
                    nonlocal failures
                    async with sem:
                        r = await client.post(
                            f"/api/v1/payments/notify/{provider}", content=body, headers=headers
                        )
                        if r.status_code not in (200, 204) or b"FAIL" in r.content or r.content == b"fail":
                            failures += 1

                profiler = None
                if os.environ.get("BENCH_PROFILE"):
                    import cProfile

                    profiler = cProfile.Profile()
                    profiler.enable()
                if os.environ.get("BENCH_SQL"):
                    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
                    logging.disable(logging.NOTSET)
                all_told.clear()
                told_target[0] = len(told) + len(notes)
                start, cpu_start = time.perf_counter(), time.process_time()
                await asyncio.gather(*(post(b, h) for _, b, h in notes))
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                # The columns are told by jobs after each commit: time until every one was told too.
                await asyncio.wait_for(all_told.wait(), timeout=120)
                told_elapsed = time.perf_counter() - start
                told_cpu = time.process_time() - cpu_start
                if profiler is not None:
                    profiler.disable()
                    profiler.dump_stats(f"/tmp/payments_notify_{name}.prof")
                dup_start, dup_cpu_start = time.perf_counter(), time.process_time()
                await asyncio.gather(*(post(b, h) for _, b, h in notes[: len(notes) // 4]))
                dup_elapsed, dup_cpu = time.perf_counter() - dup_start, time.process_time() - dup_cpu_start
                async with session_scope() as s:
                    paid_count = len(
                        (
                            await s.exec(
                                select(PaymentOrder.id).where(
                                    PaymentOrder.provider == name, PaymentOrder.status == "paid"
                                )
                            )
                        ).all()
                    )
                from payments.batch import batcher

                groups = batcher()
                n, dups = len(notes), len(notes) // 4
                print(
                    f"{name:10s} {n} notifications in {elapsed:.2f}s = {n / elapsed:7.1f}/s "
                    f"(concurrency {args.concurrency}); failures {failures}; orders paid {paid_count}; "
                    f"duplicates {dups} in {dup_elapsed:.2f}s = {dups / dup_elapsed:.1f}/s "
                    f"({dup_cpu / dups * 1000:.2f} ms CPU each)"
                )
                print(
                    f"{'':10s} app process CPU {cpu:.2f}s = {cpu / n * 1000:.2f} ms per notification "
                    f"-> {n / cpu:.0f}/s per fully available core (PostgreSQL runs on the other)"
                )
                print(
                    f"{'':10s} and every column told: {len(notes) / told_elapsed:7.1f}/s "
                    f"({told_cpu / len(notes) * 1000:.2f} ms CPU per notification)"
                )
                print(f"{'':10s} {groups.batches} transactions so far, largest batch {groups.largest}")
        for _ in range(300):
            if len(told) >= 2 * args.orders:
                break
            await asyncio.sleep(0.1)
        print(f"column told: {len(told)} times for {2 * args.orders} orders ({len(set(told))} distinct)")


if __name__ == "__main__":
    args = parse_args()
    db = f"wojia_bench_{uuid.uuid4().hex[:8]}"
    base = args.database_url.rsplit("/", 1)[0]
    os.environ.update(
        WOJIA_ENVIRONMENT="test",
        WOJIA_DATABASE_URL=f"{base}/{db}",
        WOJIA_JOBS_EMBEDDED="true",
        WOJIA_LOG_JSON="false",
        WOJIA_VAR_DIR=tempfile.mkdtemp(prefix="wojia-bench-"),
    )
    import logging

    logging.disable(logging.WARNING)
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{db}"'))
    try:
        from app_api.wiring.migrate import upgrade

        upgrade()
        asyncio.run(main(args, base))
    finally:
        asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
