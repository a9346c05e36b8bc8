"""Matching a parsed bill against the ledger's day: one discrepancy per difference, and the totals."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import polars as pl
from sqlmodel import col, select

from app_api.core.clock import CHINA_TZ
from app_api.core.db import session_scope
from payments.models import PAID_LIKE, Discrepancy, PaymentOrder
from payments.providers.base import PaymentProvider
from payments.reconciliation.bills import ParsedBill
from payments.reconciliation.ledger_day import LedgerSide, load_ledger, orders_by_no


@dataclass
class MatchResult:
    items: list[dict[str, Any]]
    totals: dict[str, Any]


def _item(category: Discrepancy, **values: Any) -> dict[str, Any]:
    return {"category": category.value, **values}


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
        known = await orders_by_no(name, bill_only["out_trade_no"].to_list())
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
