"""Parsing daily bills with polars into one normalised frame, and checking them against their totals.

Normalised columns: ``kind`` ("payment" | "refund"), ``app_id``, ``mch_id``, ``out_trade_no``,
``txn_id``, ``amount_fen``, ``refund_fen``, ``out_refund_no``, ``fee_fen``, ``traded_at`` (text).
Amounts are converted from yuan text to integer fen exactly (string arithmetic, never floats),
except fees, which WeChat prints with five decimals and are rounded to the fen.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field

import polars as pl

from app_api.core.money import yuan_to_fen
from payments.providers.base import BillFile, BillFormat, BillIntegrityError

WECHAT_COLUMNS = {
    "交易时间": "traded_at",
    "公众账号ID": "app_id",
    "商户号": "mch_id",
    "微信订单号": "txn_id",
    "商户订单号": "out_trade_no",
    "交易状态": "status",
    "应结订单金额": "amount",
    "商户退款单号": "out_refund_no",
    "退款金额": "refund",
    "手续费": "fee",
}
ALIPAY_COLUMNS = {
    "支付宝交易号": "txn_id",
    "商户订单号": "out_trade_no",
    "业务类型": "status",
    "完成时间": "traded_at",
    "订单金额（元）": "amount",
    "商家实收（元）": "received",
    "退款批次号/请求号": "out_refund_no",
    "服务费（元）": "fee",
}
SCHEMA = {
    "kind": pl.Utf8,
    "app_id": pl.Utf8,
    "mch_id": pl.Utf8,
    "out_trade_no": pl.Utf8,
    "txn_id": pl.Utf8,
    "amount_fen": pl.Int64,
    "refund_fen": pl.Int64,
    "out_refund_no": pl.Utf8,
    "fee_fen": pl.Int64,
    "traded_at": pl.Utf8,
}


@dataclass
class ParsedBill:
    frame: pl.DataFrame
    summary: dict[str, int] = field(default_factory=dict)
    account: str | None = None  # Alipay: the PID in the header


def fen_expr(name: str) -> pl.Expr:
    """Yuan text ("-12.3", "0.06000") to integer fen, exactly (truncating sub-fen digits)."""
    text = pl.col(name).str.strip_chars().str.strip_chars("`\t ")
    negative = text.str.starts_with("-")
    digits = text.str.strip_prefix("-").str.strip_prefix("+")
    parts = digits.str.split_exact(".", 1)
    whole = parts.struct.field("field_0").cast(pl.Int64, strict=True)
    frac = (
        parts.struct.field("field_1")
        .fill_null("")
        .str.pad_end(2, "0")
        .str.slice(0, 2)
        .cast(pl.Int64, strict=True)
    )
    value = whole * 100 + frac
    return pl.when(negative).then(-value).otherwise(value)


def fee_fen_expr(name: str) -> pl.Expr:
    """Fees with sub-fen digits, rounded half up to the fen."""
    text = pl.col(name).str.strip_chars().str.strip_chars("`\t ")
    return (text.cast(pl.Float64, strict=True) * 100).round(0).cast(pl.Int64)


def parse_bill(bill: BillFile) -> ParsedBill:
    try:
        if bill.format is BillFormat.WECHAT_CSV:
            return parse_wechat(bill.content)
        return parse_alipay(bill.content)
    except BillIntegrityError:
        raise
    except (pl.exceptions.PolarsError, ValueError, UnicodeDecodeError, KeyError, zipfile.BadZipFile) as exc:
        raise BillIntegrityError(f"账单无法解析: {str(exc)[:200]}") from exc


def empty_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMA)


def parse_wechat(content: bytes) -> ParsedBill:
    marker = content.rfind("总交易单数".encode())
    if marker < 0:
        raise BillIntegrityError("账单缺少汇总行（文件可能被截断）")
    detail = content[:marker]
    summary_lines = content[marker:].decode("utf-8").strip().splitlines()
    if len(summary_lines) != 2:
        raise BillIntegrityError("账单汇总行格式不正确")
    totals = [cell.strip().lstrip("`") for cell in summary_lines[1].split(",")]
    try:
        summary = {
            "count": int(totals[0]),
            "paid_fen": yuan_to_fen(totals[1]),
            "refund_fen": yuan_to_fen(totals[2]),
        }
    except (ValueError, IndexError) as exc:
        raise BillIntegrityError(f"账单汇总行无法解析: {exc}") from exc
    header = detail[: detail.find(b"\n")].decode("utf-8").strip().split(",")
    missing = [c for c in WECHAT_COLUMNS if c not in header]
    if missing:
        raise BillIntegrityError(f"账单缺少列: {', '.join(missing)}")
    # Only the ten columns reconciliation uses: a million-line bill has 27.
    raw = pl.read_csv(io.BytesIO(detail), infer_schema=False, has_header=True, columns=list(WECHAT_COLUMNS))
    raw = raw.select([pl.col(src).str.strip_prefix("`").alias(dst) for src, dst in WECHAT_COLUMNS.items()])
    frame = raw.select(
        pl.when(pl.col("status") == "REFUND")
        .then(pl.lit("refund"))
        .otherwise(pl.lit("payment"))
        .alias("kind"),
        "app_id",
        "mch_id",
        "out_trade_no",
        "txn_id",
        fen_expr("amount").alias("amount_fen"),
        fen_expr("refund").alias("refund_fen"),
        pl.when(pl.col("status") == "REFUND")
        .then(pl.col("out_refund_no"))
        .otherwise(None)
        .alias("out_refund_no"),
        fee_fen_expr("fee").alias("fee_fen"),
        "traded_at",
    )
    return ParsedBill(frame=frame, summary=summary)


_ACCOUNT_RE = re.compile(r"#账号：\[(\d+)\]")
_TRADES_RE = re.compile(r"#交易合计：(\d+)笔，商家实收：(-?[\d.]+)元")
_REFUNDS_RE = re.compile(r"#退款合计：(\d+)笔，商家实收：(-?[\d.]+)元")


def parse_alipay(content: bytes) -> ParsedBill:
    from payments.providers.alipay import zip_names

    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        names = zip_names(archive)
        detail_name = next((n for n in names if n.endswith("_业务明细.csv")), None)
        if detail_name is None:
            raise BillIntegrityError("账单压缩包中没有业务明细文件")
        text = archive.read(names[detail_name]).decode("gbk")
    lines = text.splitlines()
    account = next((m.group(1) for line in lines[:5] if (m := _ACCOUNT_RE.search(line))), None)
    trades = next((m for line in lines if (m := _TRADES_RE.search(line))), None)
    refunds = next((m for line in lines if (m := _REFUNDS_RE.search(line))), None)
    if trades is None or refunds is None:
        raise BillIntegrityError("账单缺少合计行（文件可能被截断）")
    summary = {
        "count": int(trades.group(1)) + int(refunds.group(1)),
        "paid_fen": yuan_to_fen(trades.group(2)),
        "refund_fen": -yuan_to_fen(refunds.group(2)),
    }
    body = "\n".join(line for line in lines if line and not line.startswith("#"))
    raw = pl.read_csv(io.BytesIO(body.encode()), infer_schema=False, has_header=True)
    missing = [c for c in ALIPAY_COLUMNS if c not in raw.columns]
    if missing:
        raise BillIntegrityError(f"账单缺少列: {', '.join(missing)}")
    raw = raw.select([pl.col(src).str.strip_chars("\t ").alias(dst) for src, dst in ALIPAY_COLUMNS.items()])
    refund = pl.col("status") == "退款"
    frame = raw.select(
        pl.when(refund).then(pl.lit("refund")).otherwise(pl.lit("payment")).alias("kind"),
        pl.lit(None, dtype=pl.Utf8).alias("app_id"),
        pl.lit(account, dtype=pl.Utf8).alias("mch_id"),
        "out_trade_no",
        "txn_id",
        fen_expr("amount").alias("amount_fen"),
        pl.when(refund).then(-fen_expr("received")).otherwise(0).alias("refund_fen"),
        pl.when(refund).then(pl.col("out_refund_no")).otherwise(None).alias("out_refund_no"),
        (-fee_fen_expr("fee")).alias("fee_fen"),
        "traded_at",
    )
    return ParsedBill(frame=frame, summary=summary, account=account)


def check_totals(parsed: ParsedBill) -> None:
    """Rows against the bill's own summary: a truncated or edited bill does not add up."""
    frame = parsed.frame
    count = frame.height
    paid = int(frame.filter(pl.col("kind") == "payment")["amount_fen"].sum() or 0)
    refunded = int(frame.filter(pl.col("kind") == "refund")["refund_fen"].sum() or 0)
    expected = parsed.summary
    problems = []
    if count != expected.get("count"):
        problems.append(f"行数 {count} ≠ 汇总 {expected.get('count')}")
    if paid != expected.get("paid_fen"):
        problems.append(f"收款合计 {paid} 分 ≠ 汇总 {expected.get('paid_fen')} 分")
    if refunded != expected.get("refund_fen"):
        problems.append(f"退款合计 {refunded} 分 ≠ 汇总 {expected.get('refund_fen')} 分")
    if problems:
        raise BillIntegrityError("账单明细与汇总不符: " + "；".join(problems))
