"""A reconciliation run: started by finance or the daily job, then downloading, parsing, matching, saving.

A bill that fails its integrity checks (hash, truncation, rows against the summary totals) fails
the run with a clear error; it never crashes the job or produces half a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import new_id, session_scope, utcnow
from app_api.core.jobs import outbox
from app_api.platform import audit
from payments.errors import AlreadyResolved, ItemNotFound, RunInProgress, RunNotFound
from payments.models import RECON_ITEMS, ReconciliationItem, ReconciliationRun
from payments.providers.base import BillFile, BillUnavailable, ProviderError
from payments.registry import get_provider

log = logging.getLogger(__name__)
SAVE_CHUNK = 5000


async def start_run(
    session: AsyncSession, *, provider: str, bill_date: dt.date, actor_id: str | None, enqueue: bool = True
) -> ReconciliationRun:
    running = await session.exec(
        select(ReconciliationRun.id).where(
            ReconciliationRun.provider == provider,
            ReconciliationRun.bill_date == bill_date,
            ReconciliationRun.status == "running",
        )
    )
    if running.first() is not None:
        raise RunInProgress(provider=provider, bill_date=bill_date.isoformat())
    run = ReconciliationRun(provider=provider, bill_date=bill_date, triggered_by=actor_id)
    session.add(run)
    await session.flush()
    await audit.record(
        session,
        action="payments.reconciliation_started",
        actor_id=actor_id,
        subject_type="payments_recon_run",
        subject_id=run.id,
        data={"provider": provider, "bill_date": bill_date.isoformat()},
    )
    if enqueue:
        await outbox.enqueue(session, "payments.reconcile_run", run_id=run.id)
    return run


async def _stage(run_id: str, stage: str, **values: Any) -> None:
    async with session_scope() as session:
        await session.exec(
            sa.update(ReconciliationRun)
            .where(col(ReconciliationRun.id) == run_id)
            .values(stage=stage, **values)
        )


async def execute_run(run_id: str, *, bill: BillFile | None = None) -> dict[str, Any]:
    """Download (unless ``bill`` is given), check, parse and match; store discrepancies and totals."""
    # polars (about half a second to import) loads with the first run, not in every api process.
    from payments.reconciliation.bills import ParsedBill, check_totals, empty_frame, parse_bill
    from payments.reconciliation.ledger_day import load_ledger
    from payments.reconciliation.matching import match

    async with session_scope() as session:
        run = await session.get(ReconciliationRun, run_id)
        if run is None:
            raise RunNotFound(run_id=run_id)
        provider_name, bill_date = run.provider, run.bill_date
    provider = get_provider(provider_name)
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 3)
        clock = now

    try:
        if bill is None:
            await _stage(run_id, "downloading")
            try:
                bill = await provider.download_bill(bill_date)
            except BillUnavailable:
                bill = None
        lap("download")
        await _stage(run_id, "parsing")

        async def timed_ledger() -> Any:
            started = time.perf_counter()
            side = await load_ledger(provider, bill_date)
            # Its own duration: it runs beside the parse, so it is not one of the laps.
            timings["ledger_alongside_parse"] = round(time.perf_counter() - started, 3)
            return side

        ledger = asyncio.ensure_future(timed_ledger())
        try:
            if bill is None:
                parsed = ParsedBill(frame=empty_frame(), summary={"count": 0, "paid_fen": 0, "refund_fen": 0})
            else:
                parsed = await asyncio.to_thread(parse_bill, bill)
                await asyncio.to_thread(check_totals, parsed)
        except BaseException:
            # Let the ledger read finish rather than cancel it: a connection cancelled in the middle
            # of a COPY went back to the pool in a state that stalled the next checkout.
            with contextlib.suppress(Exception):
                await ledger
            raise
        lap("parse")
        await _stage(run_id, "matching", total_rows=parsed.frame.height, progress_rows=0)
        side = await ledger
        lap("ledger_wait_after_parse")
        result = await match(provider, parsed, bill_date, side)
        lap("match")
        await _stage(run_id, "saving", progress_rows=0)
        await save_items(run_id, result.items)
        lap("save")
    except (ProviderError, ValueError) as exc:
        message = str(exc)[:500]
        log.warning("reconciliation %s failed: %s", run_id, message)
        async with session_scope() as session:
            await session.exec(
                sa.update(ReconciliationRun)
                .where(col(ReconciliationRun.id) == run_id)
                .values(status="failed", stage="failed", error=message, finished_at=utcnow())
            )
            await audit.record(
                session,
                action="payments.reconciliation_failed",
                subject_type="payments_recon_run",
                subject_id=run_id,
                data={"error": message[:200]},
            )
        return {"status": "failed", "error": message}
    async with session_scope() as session:
        await session.exec(
            sa.update(ReconciliationRun)
            .where(col(ReconciliationRun.id) == run_id)
            .values(
                status="done",
                stage="done",
                totals=result.totals,
                finished_at=utcnow(),
                progress_rows=len(result.items),
            )
        )
        await audit.record(
            session,
            action="payments.reconciliation_done",
            subject_type="payments_recon_run",
            subject_id=run_id,
            data={"discrepancies": len(result.items)},
        )
    log.info("reconciliation %s done: %d rows, seconds per stage %s", run_id, parsed.frame.height, timings)
    return {"status": "done", "totals": result.totals, "seconds": timings}


async def save_items(run_id: str, items: list[dict[str, Any]]) -> None:
    columns = (
        "out_trade_no",
        "provider_txn_id",
        "out_refund_no",
        "order_id",
        "ledger_fen",
        "provider_fen",
        "detail",
    )
    for i in range(0, len(items), SAVE_CHUNK):
        chunk = [
            {
                "id": new_id(),
                "run_id": run_id,
                "category": it["category"],
                **{c: it.get(c) if c != "detail" else (it.get("detail") or "")[:300] for c in columns},
            }
            for it in items[i : i + SAVE_CHUNK]
        ]
        async with session_scope() as session:
            await session.exec(sa.insert(RECON_ITEMS), params=chunk)
            await session.exec(
                sa.update(ReconciliationRun)
                .where(col(ReconciliationRun.id) == run_id)
                .values(progress_rows=i + len(chunk))
            )


async def resolve_item(
    session: AsyncSession, *, item_id: str, note: str, actor_id: str
) -> ReconciliationItem:
    item = (
        await session.exec(
            select(ReconciliationItem).where(ReconciliationItem.id == item_id).with_for_update()
        )
    ).first()
    if item is None:
        raise ItemNotFound(item_id=item_id)
    if item.resolved_at is not None:
        raise AlreadyResolved(item_id=item_id)
    item.resolved_at = utcnow()
    item.resolved_by = actor_id
    item.resolution_note = note
    session.add(item)
    await audit.record(
        session,
        action="payments.discrepancy_resolved",
        actor_id=actor_id,
        subject_type="payments_recon_item",
        subject_id=item.id,
        data={"run_id": item.run_id, "category": item.category, "note": note[:200]},
    )
    return item
