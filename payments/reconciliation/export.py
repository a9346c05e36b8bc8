"""A run's discrepancies for finance: CSV (UTF-8 with BOM, formulas neutralised) and XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from app_api.core.clock import CHINA_TZ
from app_api.core.money import fen_to_yuan
from payments.models import DISCREPANCY_NAMES, Discrepancy, ReconciliationItem, ReconciliationRun

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
    return "" if fen is None else fen_to_yuan(fen)


def export_rows(items: Sequence[ReconciliationItem]) -> list[list[str]]:
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


def export_csv(items: Sequence[ReconciliationItem]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_HEADER)
    for row in export_rows(items):
        # Cells starting with = + - @ would be formulas in a spreadsheet: neutralise them.
        writer.writerow(["'" + c if c[:1] in ("=", "+", "@") else c for c in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel opens UTF-8 Chinese correctly


def export_xlsx(run: ReconciliationRun, items: Sequence[ReconciliationItem]) -> bytes:
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
