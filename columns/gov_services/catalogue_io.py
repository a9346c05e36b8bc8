"""Import and export of the item catalogue as XLSX and CSV, one item per row.

Administrators maintain the catalogue in spreadsheets. The layout is flat so the same columns serve
both formats: list cells hold one entry per line; a material is one line
``名称 | 必要 | 原件=1 | 复印件=0 | 电子证照=居民身份证 | 回填=person.name,person.id_number``
(optionally ``| 模板=… | 样表=… | 条件=… | 说明=…``), a step one line
``名称 | 办理人 | 时限（工作日） | 说明``, and a condition rule one JSON object per line
(``{"id": "age", "kind": "age_at_least", "value": 60, "condition": 1, "explain": "…"}``, see
:mod:`columns.gov_services.rules`); the fee actually collected is one JSON object in 收费规则
(``{"kind": "fixed", "amount_fen": 2000, "charge_at": "submit"}``, see
:mod:`columns.gov_services.fees`; empty: nothing collected online). Money is in yuan in the sheet
(administrators think in yuan) and exactly converted to fen.

An import is all or nothing: every row is checked, every problem is reported with its row number
and column, and a file with any error yields no items at all.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from app_api.core.money import fen_to_yuan
from columns.gov_services.catalogue import CatalogueItem, Material, Step
from columns.gov_services.fees import fee_problems
from columns.gov_services.rules import rule_problems

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_ROWS = 20_000
SHEET_TITLE = "事项目录"

# (field, header). The order is the export order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("code", "事项编码"),
    ("name", "事项名称"),
    ("item_type", "事项类型"),
    ("department", "实施部门"),
    ("level", "行使层级"),
    ("summary", "事项简介"),
    ("legal_basis", "设定依据"),
    ("applicants", "服务对象"),
    ("conditions", "受理条件"),
    ("materials", "申请材料"),
    ("steps", "办理流程"),
    ("fee_yuan", "收费标准（元）"),
    ("fee_basis", "收费依据"),
    ("promised_days", "承诺时限（工作日）"),
    ("statutory_days", "法定时限（工作日）"),
    ("handling_mode", "办理方式"),
    ("max_visits", "到现场次数"),
    ("where_to_go", "办理地点"),
    ("office_hours", "办公时间"),
    ("delivery", "送达方式"),
    ("result_name", "办理结果"),
    ("result_ecert", "结果电子证照"),
    ("result_paper", "纸质结果"),
    ("contact_phone", "联系电话"),
    ("consult_phone", "咨询电话"),
    ("identity_level", "身份认证等级"),
    ("synonyms", "同义词"),
    ("keywords", "关键词"),
    ("rules", "条件规则"),
    ("instant_approval", "秒批"),
    ("instant_sample_percent", "秒批抽查比例（%）"),
    ("fee", "收费规则"),
)
HEADER_OF = dict(COLUMNS)
FIELD_OF = {h: f for f, h in COLUMNS}
OPTIONAL_HEADERS = {
    "收费依据",
    "办理地点",
    "办公时间",
    "结果电子证照",
    "同义词",
    "关键词",
    "申请材料",
    "条件规则",
    "秒批",
    "秒批抽查比例（%）",
    "收费规则",
}
# Short lists may be written on one line with any of these separators.
_SHORT_SEPS = ("、", "，", ",", "；", ";")
_FORMULA_START = ("=", "+", "-", "@")


class RowError(Exception):
    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.message = message


def _lines(cell: str) -> list[str]:
    return [ln.strip() for ln in cell.replace("\r\n", "\n").split("\n") if ln.strip()]


def _short_list(cell: str) -> list[str]:
    text = cell.replace("\r\n", "\n")
    for sep in _SHORT_SEPS:
        text = text.replace(sep, "\n")
    return _lines(text)


def _int(cell: str, column: str) -> int:
    try:
        number = Decimal(cell.strip())
        if number != number.to_integral_value():
            raise ValueError
        return int(number)
    except (InvalidOperation, ValueError, OverflowError):
        raise RowError(column, f"应为整数，实际为“{cell}”") from None


def _yuan_to_fen(cell: str) -> int:
    text = cell.strip()
    if text in ("", "免费", "0"):
        return 0
    try:
        amount = Decimal(text.removesuffix("元"))
    except InvalidOperation:
        raise RowError("收费标准（元）", f"金额格式不正确：“{cell}”") from None
    if amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise RowError("收费标准（元）", f"金额应为非负数，最多两位小数：“{cell}”")
    return int(amount * 100)


def _bool(cell: str, column: str) -> bool:
    text = cell.strip()
    if text in ("是", "有", "true", "True", "1"):
        return True
    if text in ("否", "无", "", "false", "False", "0"):
        return False
    raise RowError(column, f"应填写“是”或“否”，实际为“{cell}”")


def parse_material(line: str) -> dict[str, Any]:
    parts = [p.strip() for p in line.split("|")]
    out: dict[str, Any] = {"name": parts[0]}
    for part in parts[1:]:
        if not part:
            continue
        if part in ("必要", "必需", "必须"):
            out["required"] = True
        elif part in ("非必要", "可选", "容缺"):
            out["required"] = False
        elif "=" in part:
            key, _, value = (x.strip() for x in part.partition("="))
            if key == "原件":
                out["originals"] = _int(value, "申请材料")
            elif key == "复印件":
                out["copies"] = _int(value, "申请材料")
            elif key == "电子证照":
                out["ecert"] = value or None
            elif key == "回填":
                out["fill_fields"] = [f.strip() for f in value.split(",") if f.strip()]
            elif key == "模板":
                out["template"] = value or None
            elif key == "样表":
                out["sample"] = value or None
            elif key == "条件":
                out["condition"] = value or None
            elif key == "说明":
                out["note"] = value or None
            else:
                raise RowError("申请材料", f"材料“{parts[0]}”中有未知的项目：{key}")
        else:
            raise RowError("申请材料", f"材料“{parts[0]}”中无法识别：{part}")
    return out


def format_material(m: Material) -> str:
    parts = [m.name, "必要" if m.required else "非必要", f"原件={m.originals}", f"复印件={m.copies}"]
    for key, value in (
        ("电子证照", m.ecert),
        ("回填", ",".join(m.fill_fields)),
        ("模板", m.template),
        ("样表", m.sample),
        ("条件", m.condition),
        ("说明", m.note),
    ):
        if value:
            parts.append(f"{key}={value}")
    return " | ".join(parts)


def parse_step(line: str) -> dict[str, Any]:
    parts = [p.strip() for p in line.split("|")]
    if len(parts) < 3:
        raise RowError("办理流程", f"环节应写成“名称 | 办理人 | 时限 | 说明”：{line}")
    return {
        "name": parts[0],
        "actor": parts[1],
        "days": _int(parts[2] or "0", "办理流程"),
        "description": " | ".join(parts[3:]) or None,
    }


def format_step(s: Step) -> str:
    return " | ".join([s.name, s.actor, str(s.days), *([s.description] if s.description else [])])


def parse_rules(cell: str) -> list[Any]:
    """One rule per line, each a JSON object; raises :class:`RowError` naming every bad rule."""
    raw: list[Any] = []
    problems: list[str] = []
    for n, line in enumerate(_lines(cell), start=1):
        try:
            raw.append(json.loads(line))
        except json.JSONDecodeError as e:
            problems.append(f"第{n}条规则不是有效的 JSON（第{e.colno}个字符附近）")
            raw.append(None)
    if not problems:
        problems = rule_problems(raw)
    if problems:
        raise RowError(HEADER_OF["rules"], "；".join(problems))
    return raw


def format_rules(item: CatalogueItem) -> str:
    return "\n".join(
        json.dumps(r.model_dump(mode="json", exclude_none=True), ensure_ascii=False) for r in item.rules
    )


def parse_fee_cell(cell: str) -> Any:
    """The fee rule of a row (one JSON object, empty for none); raises :class:`RowError` with why."""
    text = cell.strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise RowError(HEADER_OF["fee"], f"收费规则不是有效的 JSON（第{e.colno}个字符附近）") from None
    problems = fee_problems(raw)
    if problems:
        raise RowError(HEADER_OF["fee"], "；".join(problems))
    return raw


def format_fee(item: CatalogueItem) -> str:
    if item.fee is None:
        return ""
    return json.dumps(item.fee.model_dump(mode="json"), ensure_ascii=False)


def item_to_row(item: CatalogueItem) -> dict[str, str]:
    """One item as spreadsheet cells, keyed by header."""
    values: dict[str, str] = {
        "code": item.code,
        "name": item.name,
        "item_type": item.item_type,
        "department": item.department,
        "level": item.level,
        "summary": item.summary,
        "legal_basis": "\n".join(item.legal_basis),
        "applicants": "、".join(item.applicants),
        "conditions": "\n".join(item.conditions),
        "materials": "\n".join(format_material(m) for m in item.materials),
        "steps": "\n".join(format_step(s) for s in item.steps),
        "fee_yuan": "0" if item.fee_fen == 0 else fen_to_yuan(item.fee_fen),
        "fee_basis": item.fee_basis or "",
        "promised_days": str(item.promised_days),
        "statutory_days": str(item.statutory_days),
        "handling_mode": item.handling_mode,
        "max_visits": str(item.max_visits),
        "where_to_go": item.where_to_go or "",
        "office_hours": item.office_hours or "",
        "delivery": "、".join(item.delivery),
        "result_name": item.result.name,
        "result_ecert": item.result.ecert or "",
        "result_paper": "是" if item.result.paper else "否",
        "contact_phone": item.contact_phone,
        "consult_phone": item.consult_phone,
        "identity_level": str(item.identity_level),
        "synonyms": "、".join(item.synonyms),
        "keywords": "、".join(item.keywords),
        "rules": format_rules(item),
        "instant_approval": "是" if item.instant_approval else "否",
        "instant_sample_percent": str(item.instant_sample_percent),
        "fee": format_fee(item),
    }
    return {HEADER_OF[f]: values[f] for f, _ in COLUMNS}


def row_to_item_data(row: Mapping[str, str]) -> dict[str, Any]:
    """Cells (by header) to the data of a :class:`CatalogueItem`; raises :class:`RowError`."""
    cell = {FIELD_OF[h]: (v or "").strip() for h, v in row.items() if h in FIELD_OF}
    return {
        "code": cell["code"],
        "name": cell["name"],
        "item_type": cell["item_type"],
        "department": cell["department"],
        "level": cell["level"],
        "summary": cell["summary"],
        "legal_basis": _lines(cell["legal_basis"]),
        "applicants": _short_list(cell["applicants"]),
        "conditions": _lines(cell["conditions"]),
        "materials": [parse_material(ln) for ln in _lines(cell.get("materials", ""))],
        "steps": [parse_step(ln) for ln in _lines(cell["steps"])],
        "fee_fen": _yuan_to_fen(cell["fee_yuan"]),
        "fee_basis": cell.get("fee_basis") or None,
        "promised_days": _int(cell["promised_days"], HEADER_OF["promised_days"]),
        "statutory_days": _int(cell["statutory_days"], HEADER_OF["statutory_days"]),
        "handling_mode": cell["handling_mode"],
        "max_visits": _int(cell["max_visits"] or "0", HEADER_OF["max_visits"]),
        "where_to_go": cell.get("where_to_go") or None,
        "office_hours": cell.get("office_hours") or None,
        "delivery": _short_list(cell["delivery"]),
        "result": {
            "name": cell["result_name"],
            "ecert": cell.get("result_ecert") or None,
            "paper": _bool(cell["result_paper"], HEADER_OF["result_paper"]),
        },
        "contact_phone": cell["contact_phone"],
        "consult_phone": cell["consult_phone"],
        "identity_level": _int(cell["identity_level"], HEADER_OF["identity_level"]),
        "synonyms": _short_list(cell.get("synonyms", "")),
        "keywords": _short_list(cell.get("keywords", "")),
        "rules": parse_rules(cell.get("rules", "")),
        "instant_approval": _bool(cell.get("instant_approval", ""), HEADER_OF["instant_approval"]),
        "instant_sample_percent": _int(
            cell.get("instant_sample_percent") or "10", HEADER_OF["instant_sample_percent"]
        ),
        "fee": parse_fee_cell(cell.get("fee", "")),
    }


def _header_for_loc(loc: Sequence[Any]) -> str | None:
    if not loc:
        return None
    first = str(loc[0])
    if first == "fee_fen":
        return HEADER_OF["fee_yuan"]
    if first == "result":
        sub = str(loc[1]) if len(loc) > 1 else "name"
        return HEADER_OF.get(f"result_{sub}", HEADER_OF["result_name"])
    return HEADER_OF.get(first)


def _header_for_message(message: str) -> str | None:
    # Whole-item checks carry no field location; rules and instant approval say so in their text.
    if message.startswith("第") and "条规则" in message:
        return HEADER_OF["rules"]
    if message.startswith("秒批"):
        return HEADER_OF["instant_approval"]
    if message.startswith("收费规则"):
        return HEADER_OF["fee"]
    return None


def _pydantic_message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", ""))
    return msg.removeprefix("Value error, ")


def parse_rows(
    header: Sequence[str],
    rows: Iterable[tuple[int, Sequence[str]]],
    *,
    known_departments: set[str] | None = None,
) -> tuple[list[CatalogueItem], list[dict[str, Any]]]:
    """Validate every row. Returns the items and no errors, or no items and every error.

    Rows are ``(row_number, cells)`` with spreadsheet numbering (the header is row 1).
    """
    errors: list[dict[str, Any]] = []
    header = [h.strip() for h in header]
    missing = [h for _, h in COLUMNS if h not in header and h not in OPTIONAL_HEADERS]
    unknown = [h for h in header if h and h not in FIELD_OF]
    dupes = {h for h in header if h and header.count(h) > 1}
    if missing:
        errors.append({"row": 1, "column": None, "message": f"缺少列：{'、'.join(missing)}"})
    if unknown:
        errors.append({"row": 1, "column": None, "message": f"无法识别的列：{'、'.join(unknown)}"})
    if dupes:
        errors.append({"row": 1, "column": None, "message": f"列重复：{'、'.join(sorted(dupes))}"})
    if errors:
        return [], errors
    items: list[CatalogueItem] = []
    first_row_of: dict[str, int] = {}
    count = 0
    for row_no, cells in rows:
        values = [_unescape(c) for c in cells]
        if not any(v.strip() for v in values):
            continue
        count += 1
        if count > MAX_ROWS:
            errors.append({"row": row_no, "column": None, "message": f"行数超过上限 {MAX_ROWS}"})
            break
        row = {h: (values[i] if i < len(values) else "") for i, h in enumerate(header)}
        try:
            data = row_to_item_data(row)
        except RowError as e:
            errors.append({"row": row_no, "column": e.column, "message": e.message})
            continue
        try:
            item = CatalogueItem.model_validate(data)
        except ValidationError as e:
            for err in e.errors():
                message = _pydantic_message(err)
                column = _header_for_loc(err["loc"]) or _header_for_message(message)
                errors.append({"row": row_no, "column": column, "message": message})
            continue
        if known_departments is not None and item.department not in known_departments:
            errors.append(
                {"row": row_no, "column": "实施部门", "message": f"未知的实施部门：{item.department}"}
            )
            continue
        if item.code in first_row_of:
            errors.append(
                {
                    "row": row_no,
                    "column": "事项编码",
                    "message": f"事项编码 {item.code} 与第 {first_row_of[item.code]} 行重复",
                }
            )
            continue
        first_row_of[item.code] = row_no
        items.append(item)
    if not items and not errors:
        errors.append({"row": 2, "column": None, "message": "文件中没有事项"})
    # All or nothing: one bad row and the good ones are not returned either.
    return ([] if errors else items), errors


def _unescape(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    # Exports prefix formula-like cells with an apostrophe so spreadsheets do not run them.
    if text.startswith("'") and text[1:2] in _FORMULA_START:
        return text[1:]
    return text


def _escape(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


# ---- CSV ----


def _decode(data: bytes) -> str:
    # Excel on Chinese Windows saves CSV as GBK; accept it as well as UTF-8 (with or without BOM).
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise RowError(None, "文件编码无法识别，请保存为 UTF-8 或 GBK 编码的 CSV")


def read_csv(
    data: bytes, *, known_departments: set[str] | None = None
) -> tuple[list[CatalogueItem], list[dict[str, Any]]]:
    if len(data) > MAX_FILE_BYTES:
        return [], [{"row": 0, "column": None, "message": "文件超过 20MB"}]
    if not data.strip():
        return [], [{"row": 0, "column": None, "message": "文件为空"}]
    try:
        text = _decode(data)
    except RowError as e:
        return [], [{"row": 0, "column": None, "message": e.message}]
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as e:
        return [], [{"row": 0, "column": None, "message": f"CSV 格式错误：{e}"}]
    if not rows:
        return [], [{"row": 0, "column": None, "message": "文件为空"}]
    return parse_rows(
        rows[0], ((i + 2, r) for i, r in enumerate(rows[1:])), known_departments=known_departments
    )


def write_csv(items: Iterable[CatalogueItem]) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow([h for _, h in COLUMNS])
    for item in items:
        writer.writerow([_escape(v) for v in item_to_row(item).values()])
    # A BOM so Excel opens the UTF-8 file with the right encoding.
    return out.getvalue().encode("utf-8-sig")


# ---- XLSX ----


def read_xlsx(
    data: bytes, *, known_departments: set[str] | None = None
) -> tuple[list[CatalogueItem], list[dict[str, Any]]]:
    from openpyxl import load_workbook

    if len(data) > MAX_FILE_BYTES:
        return [], [{"row": 0, "column": None, "message": "文件超过 20MB"}]
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError):
        return [], [{"row": 0, "column": None, "message": "不是有效的 XLSX 文件"}]
    try:
        ws = wb[SHEET_TITLE] if SHEET_TITLE in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header_row = next(rows, None)
        if header_row is None:
            return [], [{"row": 0, "column": None, "message": "文件为空"}]
        header = [_unescape(h) for h in header_row]
        while header and not header[-1]:
            header.pop()
        body = ((i + 2, [_cell(v) for v in r]) for i, r in enumerate(rows))
        return parse_rows(header, body, known_departments=known_departments)
    finally:
        wb.close()


def _cell(value: Any) -> str:
    return _unescape(value)


def write_xlsx(items: Iterable[CatalogueItem]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = SHEET_TITLE
    ws.append([h for _, h in COLUMNS])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for r, item in enumerate(items, start=2):
        for c, value in enumerate(item_to_row(item).values(), start=1):
            cell = ws.cell(row=r, column=c, value=_escape(value))
            # Strings only: openpyxl would store a leading "=" as a formula.
            cell.data_type = "s"
            cell.alignment = wrap
    ws.freeze_panes = "C2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def import_catalogue(
    data: bytes, *, filename: str, known_departments: set[str] | None = None
) -> list[CatalogueItem]:
    """Parse a catalogue file by its extension; raise :class:`CatalogueFileInvalid` on any error."""
    from columns.gov_services.errors import CatalogueFileInvalid

    name = filename.lower()
    if name.endswith(".xlsx"):
        items, errors = read_xlsx(data, known_departments=known_departments)
    elif name.endswith(".csv"):
        items, errors = read_csv(data, known_departments=known_departments)
    else:
        errors = [{"row": 0, "column": None, "message": "仅支持 .xlsx 或 .csv 文件"}]
        items = []
    if errors:
        shown = errors[:200]
        raise CatalogueFileInvalid(
            f"文件中有 {len(errors)} 处错误，未导入任何事项", errors=shown, error_count=len(errors)
        )
    return items
