"""Catalogue spreadsheets: round trips, and bad files that import nothing with a clear row-level error."""

import csv
import io

import pytest
from openpyxl import Workbook, load_workbook

from columns.gov_services.catalogue import seed_catalogue
from columns.gov_services.catalogue_io import COLUMNS, read_csv, read_xlsx, write_csv, write_xlsx

DEPTS = {d.name for d in seed_catalogue().departments}


def test_xlsx_round_trip_keeps_every_field() -> None:
    items = list(seed_catalogue().items)
    data = write_xlsx(items)
    back, errors = read_xlsx(data, known_departments=DEPTS)
    assert errors == []
    assert back == items
    ws = load_workbook(io.BytesIO(data)).active
    assert ws.title == "事项目录" and ws["A1"].value == "事项编码"
    fees = {row[1].value: row[11].value for row in ws.iter_rows(min_row=2)}
    assert fees["不动产转移登记（二手房买卖）"] == "80.00"  # yuan in the sheet, fen in the model


def test_csv_round_trip_and_gbk_from_excel() -> None:
    items = list(seed_catalogue().items)
    data = write_csv(items)
    assert data.startswith(b"\xef\xbb\xbf")
    back, errors = read_csv(data, known_departments=DEPTS)
    assert errors == [] and back == items
    gbk = data.decode("utf-8-sig").encode("gb18030")
    back, errors = read_csv(gbk, known_departments=DEPTS)
    assert errors == [] and back == items


def _rows() -> list[list[str]]:
    data = write_csv(seed_catalogue().items[:4]).decode("utf-8-sig")
    return [r for r in csv.reader(io.StringIO(data))]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _col(header: str) -> int:
    return [h for _, h in COLUMNS].index(header)


def test_bad_rows_import_nothing_and_name_row_and_column() -> None:
    rows = _rows()
    rows[1][_col("实施部门")] = "亳州市魔法管理局"
    rows[2][_col("承诺时限（工作日）")] = "三天"
    rows[3][_col("收费标准（元）")] = "12.345"
    rows.append(list(rows[4]))  # row 6 repeats the code of row 5
    items, errors = read_csv(_csv(rows), known_departments=DEPTS)
    assert items == []
    found = {(e["row"], e["column"]) for e in errors}
    assert (2, "实施部门") in found
    assert (3, "承诺时限（工作日）") in found
    assert (4, "收费标准（元）") in found
    dup = next(e for e in errors if e["row"] == 6)
    assert dup["column"] == "事项编码" and "第 5 行重复" in dup["message"]
    assert not any(e["row"] == 5 for e in errors)


@pytest.mark.parametrize(
    ("header", "value", "message"),
    [
        ("事项类型", "行政处罚", "事项类型"),
        ("申请材料", "身份证 | 必要 | 电子证照=月球护照", "未知的电子证照类型"),
        ("申请材料", "身份证 | 复印=2", "未知的项目"),
        ("办理流程", "受理", "名称 | 办理人"),
        ("纸质结果", "也许", "“是”或“否”"),
        ("联系电话", "打电话", "电话号码格式不正确"),
    ],
)
def test_each_bad_cell_is_explained(header: str, value: str, message: str) -> None:
    rows = _rows()
    rows[1][_col(header)] = value
    items, errors = read_csv(_csv(rows), known_departments=DEPTS)
    assert items == []
    assert any(e["row"] == 2 and message in e["message"] + str(e["column"]) for e in errors), errors


def test_rule_breaking_row_reports_the_rule() -> None:
    rows = _rows()
    rows[1][_col("承诺时限（工作日）")] = "99"
    items, errors = read_csv(_csv(rows), known_departments=DEPTS)
    assert items == [] and any("承诺时限不能超过法定时限" in e["message"] for e in errors)


def test_bad_files() -> None:
    assert read_xlsx(b"PK\x03\x04 not really a zip")[1][0]["message"] == "不是有效的 XLSX 文件"
    assert read_xlsx(b"%PDF-1.7")[1][0]["message"] == "不是有效的 XLSX 文件"
    assert read_csv(b"")[1][0]["message"] == "文件为空"
    assert "缺少列" in read_csv("事项编码,事项名称\nA,B\n".encode())[1][0]["message"]
    only_header = ",".join(h for _, h in COLUMNS).encode()
    assert read_csv(only_header)[1][0]["message"] == "文件中没有事项"
    wb = Workbook()
    wb.active.append(["foo", "bar"])
    buf = io.BytesIO()
    wb.save(buf)
    items, errors = read_xlsx(buf.getvalue())
    assert items == [] and "无法识别的列" in " ".join(e["message"] for e in errors)


def test_formula_like_text_is_kept_as_text() -> None:
    item = seed_catalogue().items[0].model_copy(update={"summary": '=HYPERLINK("http://x")'})
    data = write_xlsx([item])
    cell = load_workbook(io.BytesIO(data)).active["F2"]
    assert cell.data_type == "s"
    back, errors = read_xlsx(data, known_departments=DEPTS)
    assert errors == [] and back[0].summary == item.summary
    back, errors = read_csv(write_csv([item]), known_departments=DEPTS)
    assert errors == [] and back[0].summary == item.summary
