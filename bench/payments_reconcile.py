"""Reconciliation time and peak memory: a 1,000,000-line WeChat Pay bill against 1,000,000 ledger rows.

    .venv/bin/python bench/payments_reconcile.py [--rows 1000000] [--rounds 3] [--database-url ...]

Setup (not timed): a scratch PostgreSQL database from the migrations, N paid orders for one China-time
day loaded with COPY, and the provider's bill for that day written in WeChat's real format (backtick
cells, 27 columns, summary lines) with a handful of planted discrepancies. Then, each in a fresh
process so that peak memory (max RSS) belongs to that step alone:

1. parse only: polars reading the bill file (``pl.read_csv``) and nothing else;
2. the full run: our parser (yuan to fen, backticks), the totals check, the ledger load (COPY),
   the match, and saving the discrepancies, exactly as the daily job runs it.

Prints seconds, peak RSS and the ratio to parse-only for each round (parse-only and the full run
alternate, ``--rounds`` times), then the medians. Goal: at most 60 s, at most 2 GB, within 5x.
The stage timings are laps that add up to the run, except ``ledger_alongside_parse``: the ledger
is read beside the parse, and ``ledger_wait_after_parse`` is what was left of it after the parse.
``--database-url`` (default ``BENCH_PG``, an admin database such as ``.../postgres``) is used only
to create and drop the scratch database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._harness import ADMIN_PG, emit, json_requested  # noqa: E402

DAY = "2025-06-18"
APPID, MCH = "wxbench00000000001", "1900012345"


def rss_mb() -> float:
    """Peak RSS of this process image (VmHWM resets at exec; ru_maxrss would carry the parent's over)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def setup(rows: int, bill_path: Path) -> None:
    import datetime as dt

    import asyncpg

    from app_api.core.clock import CHINA_TZ
    from app_api.core.db import new_id
    from app_api.core.money import fen_to_yuan
    from payments.ledger import purpose_key
    from payments.sandbox.bills import WECHAT_HEADER, WECHAT_SUMMARY_HEADER

    dsn = os.environ["WOJIA_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    account = new_id()
    await conn.execute(
        "INSERT INTO app_account (id, phone_hash, phone_enc, roles, identity_level, elderly_mode, is_active, "
        "created_at) VALUES ($1, $2, $3, '[\"resident\"]', 1, false, true, now())",
        account,
        uuid.uuid4().hex,
        b"x",
    )
    day = dt.date.fromisoformat(DAY)
    start = dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)
    now = dt.datetime.now(dt.UTC)
    ledger = []
    lines = [WECHAT_HEADER]
    paid_total = fee_total = 0
    planted = {"missing_in_ledger": 3, "missing_at_provider": 3, "amount_mismatch": 3}
    for i in range(rows):
        out = f"WJB{i:012d}"
        txn = f"42{i:026d}"
        amount = 100 + (i * 37) % 99_900
        paid_at = start + dt.timedelta(seconds=(i * 86_399) // max(rows, 1))
        in_ledger = i >= planted["missing_in_ledger"]
        in_bill = i < rows - planted["missing_at_provider"]
        bill_amount = amount + (1 if planted["missing_in_ledger"] <= i < 6 else 0)
        if in_ledger:
            key = purpose_key("bench.bill", f"B{i}")
            ledger.append(
                (
                    new_id(), out, account, "bench.bill", f"B{i}", key, "水费", amount, "wechat_v2", MCH,
                    "miniprogram", "paid", txn, 0, paid_at, paid_at, None, None, now, now,
                )
            )  # fmt: skip
        if in_bill:
            fee = (bill_amount * 6 + 500) // 1000
            paid_total += bill_amount
            fee_total += fee
            yuan = fen_to_yuan(bill_amount)
            stamp = paid_at.strftime("%Y-%m-%d %H:%M:%S")
            fee_yuan = fen_to_yuan(fee) + "000"  # WeChat prints fees with five decimals
            lines.append(
                f"`{stamp},`{APPID},`{MCH},`0,`,`{txn},`{out},`oUser{i % 9973},`JSAPI,`SUCCESS,`OTHERS,`CNY,"
                f"`{yuan},`0.00,`0,`0,`0.00,`0.00,`,`,`水费,`,`{fee_yuan},`0.60%,`{yuan},`0.00,`"
            )
    count = len(lines) - 1
    lines.append(WECHAT_SUMMARY_HEADER)
    total = fen_to_yuan(paid_total)
    lines.append(f"`{count},`{total},`0.00,`0.00,`{fen_to_yuan(fee_total)}000,`{total},`0.00")
    await asyncio.to_thread(bill_path.write_text, "\r\n".join(lines) + "\r\n", encoding="utf-8")
    del lines
    await conn.copy_records_to_table(
        "payments_order",
        records=ledger,
        columns=[
            "id", "out_trade_no", "account_id", "purpose", "purpose_ref", "purpose_key", "description",
            "amount_fen", "provider", "merchant_id", "channel", "status", "provider_txn_id", "refunded_fen",
            "paid_at", "expires_at", "closed_at", "column_notified_at", "created_at", "updated_at",
        ],
    )  # fmt: skip
    await conn.execute("ANALYZE payments_order")
    await conn.close()


def measure_parse(bill_path: str) -> None:
    import polars as pl

    start = time.perf_counter()
    frame = pl.read_csv(bill_path, infer_schema=False, has_header=True, truncate_ragged_lines=True)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "rows": frame.height, "peak_rss_mb": rss_mb()}))


async def measure_run(bill_path: str) -> None:
    import datetime as dt

    from app_api.core.db import session_scope
    from payments import registry
    from payments.providers.base import BillFile, BillFormat, ProviderName
    from payments.providers.wechat_v2 import WeChatPayV2Provider, WeChatV2Config
    from payments.reconciliation.runs import execute_run, start_run

    registry.configure(
        {"wechat_v2": WeChatPayV2Provider(WeChatV2Config(appid=APPID, mch_id=MCH, api_key="k" * 32))}
    )
    async with session_scope() as s:
        run = await start_run(s, provider="wechat_v2", bill_date=dt.date.fromisoformat(DAY), actor_id=None,
                              enqueue=False)  # fmt: skip
    start = time.perf_counter()
    content = await asyncio.to_thread(Path(bill_path).read_bytes)
    bill = BillFile(ProviderName.WECHAT_V2, dt.date.fromisoformat(DAY), BillFormat.WECHAT_CSV, content)
    result = await execute_run(run.id, bill=bill)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": rss_mb(), "result": result}, default=str))


def child(mode: str, bill_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--bill", str(bill_path)],
        capture_output=True, text=True, env=os.environ.copy(), check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument(
        "--database-url",
        default=ADMIN_PG,
        help="admin DSN, used only to create and drop a scratch database (default: BENCH_PG)",
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating parse-only / full rounds")
    p.add_argument("--json", action="store_true", default=json_requested(), help="print final BENCH lines")
    p.add_argument("--child")
    p.add_argument("--bill")
    args = p.parse_args()
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        if args.child == "parse":
            measure_parse(args.bill)
        else:
            asyncio.run(measure_run(args.bill))
        return

    db = f"wojia_bench_{uuid.uuid4().hex[:8]}"
    os.environ.update(
        WOJIA_ENVIRONMENT="test",
        WOJIA_DATABASE_URL=f"{args.database_url.rsplit('/', 1)[0]}/{db}",
        WOJIA_JOBS_EMBEDDED="true",
        WOJIA_LOG_JSON="false",
        WOJIA_VAR_DIR=tempfile.mkdtemp(prefix="wojia-bench-"),
    )
    asyncio.run(admin(args.database_url, f'CREATE DATABASE "{db}"'))
    bill_path = Path(tempfile.mkdtemp(prefix="wojia-bill-")) / "bill.csv"
    try:
        import logging

        logging.disable(logging.WARNING)
        from app_api.wiring.migrate import upgrade

        upgrade()
        t = time.perf_counter()
        asyncio.run(setup(args.rows, bill_path))
        size = bill_path.stat().st_size / 1e6
        load = os.getloadavg()[0]
        print(f"setup: {args.rows} ledger rows + bill of {size:.0f} MB in {time.perf_counter() - t:.1f}s; "
              f"load average {load:.2f} on {os.cpu_count()} cores")  # fmt: skip
        rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for n in range(1, max(1, args.rounds) + 1):
            # Alternate the two sides (parse, full, parse, full, ...): noise lands on both alike.
            parse = child("parse", bill_path)
            run = child("run", bill_path)
            rounds.append((parse, run))
            print(f"round {n}: parse only (polars read_csv) {parse['seconds']:.2f}s, "
                  f"peak RSS {parse['peak_rss_mb']:.0f} MB, {parse['rows']} rows; "
                  f"full reconciliation {run['seconds']:.2f}s, peak RSS {run['peak_rss_mb']:.0f} MB "
                  f"-> {run['seconds'] / parse['seconds']:.1f}x parse-only")  # fmt: skip
            print(f"  seconds per stage: {run['result'].get('seconds')}")
            totals = run["result"].get("totals", {})
            print(f"  status {run['result'].get('status')}; discrepancies {totals.get('discrepancies')}; "
                  f"bill rows {totals.get('bill_rows')}, "
                  f"ledger rows {totals.get('ledger_paid_count')}")  # fmt: skip
        ratio = statistics.median(r["seconds"] / p["seconds"] for p, r in rounds)
        seconds = statistics.median(r["seconds"] for _, r in rounds)
        peak = max(r["peak_rss_mb"] for _, r in rounds)
        print(f"median of {len(rounds)} rounds: full {seconds:.2f}s (goal <= 60 s), "
              f"{ratio:.1f}x parse-only (goal <= 5x), peak RSS {peak:.0f} MB (goal <= 2048 MB)")  # fmt: skip
        emit(
            args.json,
            work=f"reconciliation, {args.rows:,} bill lines vs ledger (x parse-only)",
            goal="<= 5x parse-only, <= 60 s, <= 2 GB",
            figure=f"{ratio:.1f}x, {seconds:.2f} s, peak {peak:.0f} MB",
            ratio=round(min(5.0 / ratio, 60.0 / seconds, 2048.0 / peak), 3),
            script="payments_reconcile.py",
        )
    finally:
        bill_path.unlink(missing_ok=True)
        asyncio.run(admin(args.database_url, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
