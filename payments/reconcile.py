"""Daily reconciliation: a provider's bill for a China-time day against the ledger for that day.

Stages (visible to finance while a run is in progress): downloading, parsing, matching, saving.
A bill that fails its integrity checks (hash, truncation, rows against the summary totals) fails
the run with a clear error; it never crashes the job or produces half a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from app_api.core.jobs import outbox
from app_api.platform import audit
from payments.bills import ParsedBill, check_totals, empty_frame, parse_bill
from payments.errors import AlreadyResolved, ItemNotFound, RunInProgress, RunNotFound
from payments.models import (
    DISCREPANCY_NAMES,
    PAID_LIKE,
    Discrepancy,
    PaymentOrder,
    PaymentRefund,
    ReconciliationItem,
    ReconciliationRun,
    RefundStatus,
)
from payments.providers.base import CHINA_TZ, BillFile, BillUnavailable, PaymentProvider, ProviderError

log = logging.getLogger(__name__)
SAVE_CHUNK = 5000


def china_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


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
            .where(col(ReconciliationRun.id) == run_id)  # type: ignore[call-overload]
            .values(stage=stage, **values)
        )


async def execute_run(run_id: str, *, bill: BillFile | None = None) -> dict[str, Any]:
    """Download (unless ``bill`` is given), check, parse and match; store discrepancies and totals."""
    from payments.registry import get_provider

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
        ledger = asyncio.ensure_future(load_ledger(provider, bill_date))
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
        lap("ledger")
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
                .where(col(ReconciliationRun.id) == run_id)  # type: ignore[call-overload]
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
            .where(col(ReconciliationRun.id) == run_id)  # type: ignore[call-overload]
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


@dataclass
class MatchResult:
    items: list[dict[str, Any]]
    totals: dict[str, Any]


async def _ledger_payments(
    session: AsyncSession, provider: str, merchant_id: str, start: dt.datetime, end: dt.datetime
) -> pl.DataFrame:
    schema = {
        "order_id": pl.Utf8,
        "out_trade_no": pl.Utf8,
        "ledger_fen": pl.Int64,
        "status": pl.Utf8,
        "ledger_txn": pl.Utf8,
        "duplicate_of": pl.Utf8,
    }
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # COPY is an order of magnitude faster than row fetching for a million orders.
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        buffer = io.BytesIO()
        await raw.driver_connection.copy_from_query(  # type: ignore[union-attr]
            "SELECT id, out_trade_no, amount_fen, status, coalesce(provider_txn_id, ''), duplicate_of "
            "FROM payments_order "
            "WHERE provider = $1 AND merchant_id IN ($5, '') AND paid_at >= $2 AND paid_at < $3 "
            "AND status = ANY($4::text[])",
            provider,
            start,
            end,
            [s.value for s in PAID_LIKE],
            merchant_id,
            output=buffer,
            format="csv",
        )
        if buffer.tell() == 0:
            return pl.DataFrame(schema=schema)
        buffer.seek(0)
        return pl.read_csv(buffer, has_header=False, new_columns=list(schema), schema_overrides=schema)
    rows = (
        await session.exec(  # type: ignore[call-overload]
            sa.select(
                col(PaymentOrder.id),
                col(PaymentOrder.out_trade_no),
                col(PaymentOrder.amount_fen),
                col(PaymentOrder.status),
                col(PaymentOrder.provider_txn_id),
                col(PaymentOrder.duplicate_of),
            ).where(
                col(PaymentOrder.provider) == provider,
                col(PaymentOrder.merchant_id).in_([merchant_id, ""]),
                col(PaymentOrder.paid_at) >= start,
                col(PaymentOrder.paid_at) < end,
                col(PaymentOrder.status).in_([s.value for s in PAID_LIKE]),
            )
        )
    ).all()
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


@dataclass
class LedgerSide:
    """The ledger's side of a day for one merchant: what the bill is matched against."""

    payments: pl.DataFrame
    refunds: Sequence[Any]  # (out_refund_no, amount_fen, order_id) succeeded that day


async def load_ledger(provider: PaymentProvider, bill_date: dt.date) -> LedgerSide:
    """Read the day's ledger, payments and refunds on two connections (it does not depend on the
    bill): ``execute_run`` starts this before parsing the bill, so the database works meanwhile.
    Purposes paid twice come with the payments (``duplicate_of``, decided when the order was paid).
    """
    start, end = china_day_bounds(bill_date)
    name, merchant = provider.name.value, provider.merchant_id
    merchants = [merchant, ""]

    async def payments() -> pl.DataFrame:
        async with session_scope() as session:
            return await _ledger_payments(session, name, merchant, start, end)

    async def refunds() -> Sequence[Any]:
        async with session_scope() as session:
            return (
                await session.exec(
                    select(PaymentRefund.out_refund_no, PaymentRefund.amount_fen, PaymentRefund.order_id)
                    .join(PaymentOrder, col(PaymentOrder.id) == col(PaymentRefund.order_id))
                    .where(
                        PaymentOrder.provider == name,
                        col(PaymentOrder.merchant_id).in_(merchants),
                        PaymentRefund.status == RefundStatus.SUCCEEDED.value,
                        col(PaymentRefund.succeeded_at) >= start,
                        col(PaymentRefund.succeeded_at) < end,
                    )
                )
            ).all()

    paid, refunded = await asyncio.gather(payments(), refunds())
    return LedgerSide(payments=paid, refunds=refunded)


def _first_of_each(
    frame: pl.DataFrame, key: str, amount: str, category: Discrepancy
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Keep the first row of each ``key``; a discrepancy for each key the bill lists more than once."""
    repeated = frame.filter(pl.col(key).is_duplicated())
    if repeated.is_empty():
        return frame, []
    what = "退款" if category is Discrepancy.REFUND_MISMATCH else "收款"
    report = (
        repeated.group_by(key, maintain_order=True)
        .agg(
            pl.len().alias("times"),
            pl.col(amount).sum().alias("total_fen"),
            *(pl.col(c).first() for c in ("out_trade_no", "out_refund_no", "txn_id") if c != key),
        )
        .to_dicts()
    )
    items = [
        _item(
            category,
            out_trade_no=row["out_trade_no"],
            out_refund_no=row["out_refund_no"] or None,
            provider_txn_id=row["txn_id"],
            provider_fen=row["total_fen"],
            detail=f"渠道账单中该笔{what}出现 {row['times']} 次",
        )
        for row in report
    ]
    return frame.unique(subset=[key], keep="first", maintain_order=True), items


async def match(
    provider: PaymentProvider, parsed: ParsedBill, bill_date: dt.date, side: LedgerSide | None = None
) -> MatchResult:
    name = provider.name.value
    frame = parsed.frame
    items: list[dict[str, Any]] = []

    # Rows for another app or merchant never count towards ours.
    ours = pl.col("mch_id") == provider.merchant_id
    if frame.height and frame["app_id"].null_count() < frame.height:
        ours = ours & (pl.col("app_id") == provider.app_id)
    foreign = frame.filter(~ours)
    frame = frame.filter(ours)
    for row in foreign.iter_rows(named=True):
        items.append(
            _item(
                Discrepancy.FOREIGN_ROW,
                out_trade_no=row["out_trade_no"],
                provider_txn_id=row["txn_id"],
                provider_fen=row["amount_fen"],
                detail=f"应用 {row['app_id'] or '-'} / 商户 {row['mch_id']}",
            )
        )

    payments = frame.filter(pl.col("kind") == "payment")
    refunds = frame.filter(pl.col("kind") == "refund")
    # A bill that lists one payment or one refund more than once claims that money more than once.
    payments, repeated_payments = _first_of_each(
        payments, "out_trade_no", "amount_fen", Discrepancy.AMOUNT_MISMATCH
    )
    refunds, repeated_refunds = _first_of_each(
        refunds, "out_refund_no", "refund_fen", Discrepancy.REFUND_MISMATCH
    )
    items += repeated_payments + repeated_refunds
    if side is None:
        side = await load_ledger(provider, bill_date)
    ledger, refund_rows = side.payments, side.refunds

    joined = payments.join(ledger, on="out_trade_no", how="full", coalesce=True)
    both = joined.filter(pl.col("order_id").is_not_null() & pl.col("amount_fen").is_not_null())
    for row in both.filter(pl.col("amount_fen") != pl.col("ledger_fen")).iter_rows(named=True):
        items.append(
            _item(
                Discrepancy.AMOUNT_MISMATCH,
                out_trade_no=row["out_trade_no"],
                order_id=row["order_id"],
                provider_txn_id=row["txn_id"],
                ledger_fen=row["ledger_fen"],
                provider_fen=row["amount_fen"],
                detail="渠道金额与账本金额不同",
            )
        )
    for row in joined.filter(pl.col("amount_fen").is_null()).iter_rows(named=True):
        items.append(
            _item(
                Discrepancy.MISSING_AT_PROVIDER,
                out_trade_no=row["out_trade_no"],
                order_id=row["order_id"],
                provider_txn_id=row["ledger_txn"] or None,
                ledger_fen=row["ledger_fen"],
                detail="账本已入账，渠道账单中没有",
            )
        )
    bill_only = joined.filter(pl.col("order_id").is_null())
    if bill_only.height:
        known = await _orders_by_no(name, bill_only["out_trade_no"].to_list())
        for row in bill_only.iter_rows(named=True):
            order = known.get(row["out_trade_no"])
            if order is None:
                items.append(
                    _item(
                        Discrepancy.MISSING_IN_LEDGER,
                        out_trade_no=row["out_trade_no"],
                        provider_txn_id=row["txn_id"],
                        provider_fen=row["amount_fen"],
                        detail="渠道已收款，账本中没有该订单",
                    )
                )
            else:
                paid_at = order["paid_at"]
                detail = (
                    f"账本状态为 {order['status']}"
                    if order["status"] not in {s.value for s in PAID_LIKE}
                    else f"账本入账日期为 {paid_at.astimezone(CHINA_TZ).date() if paid_at else '-'}"
                )
                items.append(
                    _item(
                        Discrepancy.STATUS_MISMATCH,
                        out_trade_no=row["out_trade_no"],
                        order_id=order["id"],
                        provider_txn_id=row["txn_id"],
                        ledger_fen=order["amount_fen"],
                        provider_fen=row["amount_fen"],
                        detail="渠道已收款；" + detail,
                    )
                )

    ledger_refunds = pl.DataFrame(
        [tuple(r) for r in refund_rows],
        orient="row",
        schema={"out_refund_no": pl.Utf8, "ledger_refund_fen": pl.Int64, "order_id": pl.Utf8},
    )
    refund_join = refunds.join(ledger_refunds, on="out_refund_no", how="full", coalesce=True)
    for row in refund_join.filter(
        pl.col("refund_fen").is_null()
        | pl.col("ledger_refund_fen").is_null()
        | (pl.col("refund_fen") != pl.col("ledger_refund_fen"))
    ).iter_rows(named=True):
        detail = (
            "账本有退款，渠道没有"
            if row["refund_fen"] is None
            else "渠道有退款，账本没有"
            if row["ledger_refund_fen"] is None
            else "退款金额不同"
        )
        items.append(
            _item(
                Discrepancy.REFUND_MISMATCH,
                out_trade_no=row["out_trade_no"],
                out_refund_no=row["out_refund_no"],
                order_id=row["order_id"],
                ledger_fen=row["ledger_refund_fen"],
                provider_fen=row["refund_fen"],
                detail=detail,
            )
        )

    duplicated = ledger.filter(pl.col("duplicate_of").is_not_null())
    if duplicated.height:
        ids = duplicated["order_id"].to_list() + duplicated["duplicate_of"].to_list()
        async with session_scope() as session:
            by_id = {
                o.id: o
                for o in (await session.exec(select(PaymentOrder).where(col(PaymentOrder.id).in_(ids)))).all()
            }
        for row in duplicated.iter_rows(named=True):
            dup, first = by_id[row["order_id"]], by_id.get(row["duplicate_of"])
            first_no = first.out_trade_no if first else row["duplicate_of"]
            items.append(
                _item(
                    Discrepancy.DUPLICATE_PURPOSE,
                    out_trade_no=dup.out_trade_no,
                    order_id=dup.id,
                    provider_txn_id=dup.provider_txn_id,
                    ledger_fen=dup.amount_fen,
                    detail=f"与订单 {first_no} 为同一事项（{dup.purpose}）",
                )
            )

    counts: dict[str, int] = {c.value: 0 for c in Discrepancy}
    for item in items:
        counts[item["category"]] += 1
    totals = {
        "provider_paid_count": payments.height,
        "provider_paid_fen": int(payments["amount_fen"].sum() or 0),
        "provider_refund_count": refunds.height,
        "provider_refund_fen": int(refunds["refund_fen"].sum() or 0),
        "provider_fee_fen": int(frame["fee_fen"].sum() or 0),
        "ledger_paid_count": ledger.height,
        "ledger_paid_fen": int(ledger["ledger_fen"].sum() or 0),
        "ledger_refund_count": ledger_refunds.height,
        "ledger_refund_fen": int(ledger_refunds["ledger_refund_fen"].sum() or 0),
        "foreign_rows": foreign.height,
        "bill_rows": parsed.frame.height,
        "discrepancies": counts,
    }
    return MatchResult(items=items, totals=totals)


async def _orders_by_no(provider: str, numbers: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    async with session_scope() as session:
        for i in range(0, len(numbers), 1000):
            chunk = [n for n in numbers[i : i + 1000] if n]
            rows = (
                await session.exec(select(PaymentOrder).where(col(PaymentOrder.out_trade_no).in_(chunk)))
            ).all()
            for order in rows:
                found[order.out_trade_no] = {
                    "id": order.id,
                    "status": order.status,
                    "amount_fen": order.amount_fen,
                    "paid_at": order.paid_at,
                    "provider": order.provider,
                }
    return found


def _item(category: Discrepancy, **values: Any) -> dict[str, Any]:
    return {"category": category.value, **values}


async def save_items(run_id: str, items: list[dict[str, Any]]) -> None:
    from app_api.core.db import new_id

    table = ReconciliationItem.__table__  # type: ignore[attr-defined]
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
            await session.exec(sa.insert(table), params=chunk)  # type: ignore[call-overload]
            await session.exec(
                sa.update(ReconciliationRun)
                .where(col(ReconciliationRun.id) == run_id)  # type: ignore[call-overload]
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


EXPORT_HEADER = [
    "差错类型",
    "商户订单号",
    "渠道交易号",
    "退款单号",
    "账本金额(元)",
    "渠道金额(元)",
    "说明",
    "处理时间",
    "处理说明",
]


def _yuan(fen: int | None) -> str:
    from payments.providers.base import fen_to_yuan

    return "" if fen is None else fen_to_yuan(fen)


def export_rows(items: list[ReconciliationItem]) -> list[list[str]]:
    return [
        [
            DISCREPANCY_NAMES.get(Discrepancy(i.category), i.category),
            i.out_trade_no or "",
            i.provider_txn_id or "",
            i.out_refund_no or "",
            _yuan(i.ledger_fen),
            _yuan(i.provider_fen),
            i.detail,
            i.resolved_at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if i.resolved_at else "",
            i.resolution_note or "",
        ]
        for i in items
    ]


def export_csv(items: list[ReconciliationItem]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_HEADER)
    for row in export_rows(items):
        # Cells starting with = + - @ would be formulas in a spreadsheet: neutralise them.
        writer.writerow(["'" + c if c[:1] in ("=", "+", "@") else c for c in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese correctly


def export_xlsx(run: ReconciliationRun, items: list[ReconciliationItem]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "差错明细"
    sheet.append(EXPORT_HEADER)
    for row in export_rows(items):
        sheet.append(row)
    totals = book.create_sheet("汇总")
    totals.append(["渠道", run.provider])
    totals.append(["账单日期", run.bill_date.isoformat()])
    for key, value in (run.totals or {}).items():
        if not isinstance(value, dict):
            totals.append([key, value])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
