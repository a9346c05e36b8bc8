"""Validation errors read in Chinese: the field's label and what is wrong, with ``loc`` and ``type`` kept.

Pydantic's English ("String should match pattern ...", "Input should be '购房' ...") used to reach
residents under a Chinese title.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Form, Query
from pydantic import BaseModel, ConfigDict, Field

from tests.conftest import LoginFn

CJK = re.compile(r"[\u4e00-\u9fff]")
# Phrases of pydantic's English messages; none may reach a resident.
ENGLISH = re.compile(
    r"Input should|String should|should be|should have|Field required|Value error|Extra inputs"
    r"|valid (integer|number|boolean|string|list|dictionary)|at least|at most|permitted",
    re.IGNORECASE,
)


def chinese_only(body: dict[str, Any]) -> list[dict[str, Any]]:
    assert body["code"] == "app.validation_failed", body
    assert body["title"] == "提交的信息有误，请检查后重试"
    errors: list[dict[str, Any]] = body["errors"]
    assert errors
    for e in errors:
        assert set(e) == {"loc", "type", "msg"} and e["loc"] and e["type"], e
        assert CJK.search(e["msg"]) and not ENGLISH.search(e["msg"]), e
    assert CJK.search(body["detail"]) and not ENGLISH.search(body["detail"])
    return errors


def by_type(errors: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in errors:
        out.setdefault(e["type"], []).append(e["msg"])
    return out


# ---------------------------------------------------------------- real routes, residents' mistakes


async def test_a_bill_payment_with_every_kind_of_mistake_is_explained_in_chinese(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    headers = await login(level=1)
    url = "/api/v1/columns/utilities/payments"
    bad = {"bill_ids": [], "provider": "paypal", "channel": 5, "payer_id": "x" * 200, "coupon": "8折"}
    r = await client.post(url, json=bad, headers=headers)
    assert r.status_code == 422, r.text
    msgs = by_type(chinese_only(r.json()))
    assert msgs["too_short"] == ["bill_ids 至少需要 1 项"]
    assert "provider 应为以下之一：wechat_v2、wechat_v3、alipay" in msgs["literal_error"]
    assert msgs["string_too_long"] == ["payer_id 长度不能超过 128 个字符"]
    assert msgs["extra_forbidden"] == ["coupon 不是可接受的字段"]

    r = await client.post(url, json={"bill_ids": "B1"}, headers=headers)
    msgs = by_type(chinese_only(r.json()))
    assert msgs["list_type"] == ["bill_ids 应为列表"] and msgs["missing"] == ["provider 为必填项"]

    r = await client.post(url, json=["B1"], headers=headers)
    assert by_type(chinese_only(r.json()))["model_attributes_type"] == ["请求内容 应为对象"]


async def test_pattern_length_and_query_mistakes_are_explained_in_chinese(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": "1380000"})
    assert r.status_code == 422
    assert by_type(chinese_only(r.json()))["string_pattern_mismatch"] == ["phone 格式不正确"]

    headers = await login()
    r = await client.post(
        "/api/v1/columns/gov_services/applications",
        json={"item_code": "BZ", "client_key": 12},
        headers=headers,
    )
    msgs = by_type(chinese_only(r.json()))
    assert msgs["string_too_short"] == ["item_code 长度不能少于 4 个字符"]
    assert msgs["string_type"] == ["client_key 应为文本"]

    headers = await login(level=2)
    r = await client.get("/api/v1/columns/provident_fund/contributions?months=abc", headers=headers)
    assert by_type(chinese_only(r.json()))["int_parsing"] == ["months 应为整数"]
    r = await client.get("/api/v1/columns/provident_fund/contributions?months=61", headers=headers)
    assert by_type(chinese_only(r.json()))["less_than_equal"] == ["months 不能大于 60"]
    r = await client.post(
        "/api/v1/columns/provident_fund/loan-estimate",
        json={"house_price_fen": 0, "term_years": 1, "first_home": "也许"},
        headers=headers,
    )
    msgs = by_type(chinese_only(r.json()))
    assert msgs["greater_than"] == ["house_price_fen 必须大于 0"]
    assert msgs["bool_parsing"] == ["first_home 应为是或否（true 或 false）"]


# ---------------------------------------------------------------- the label convention: ``title``


class Address(BaseModel):
    phone: str = Field(title="联系电话", pattern=r"^1\d{10}$")
    line: str


class Withdrawal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_number: str = Field(title="身份证号码", pattern=r"^\d{17}[\dX]$")
    amount_fen: int = Field(title="金额", ge=1)
    purpose: Literal["购房", "租房", "大病医疗"] = Field(title="用途")
    materials: list[str] = Field(title="材料", min_length=1)
    address: Address | None = None
    note: str | None = Field(default=None, max_length=10)


@pytest.fixture(scope="module")
def labelled() -> httpx.AsyncClient:
    """A small app with titled fields, behind the platform's error handlers."""
    from app_api.wiring.app import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.post("/withdrawals")
    async def withdraw(body: Withdrawal, page: Annotated[int, Query(title="页码", ge=1)] = 1) -> None:
        return None

    @app.post("/uploads")
    async def upload(material: Annotated[str, Form(title="材料名称", min_length=2)]) -> None:
        return None

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://labelled")


async def test_fields_with_a_title_are_named_by_it(labelled: httpx.AsyncClient) -> None:
    body = {
        "id_number": "34160219",
        "amount_fen": 0,
        "purpose": "买车",
        "materials": [],
        "address": {"phone": "12"},
        "note": "一二三四五六七八九十十一",
        "extra": True,
    }
    r = await labelled.post("/withdrawals?page=0", json=body)
    errors = chinese_only(r.json())
    msgs = {tuple(e["loc"]): e["msg"] for e in errors}
    assert msgs[("query", "page")] == "页码 不能小于 1"
    assert msgs[("body", "id_number")] == "身份证号码 格式不正确"
    assert msgs[("body", "amount_fen")] == "金额 不能小于 1"
    assert msgs[("body", "purpose")] == "用途 应为以下之一：购房、租房、大病医疗"
    assert msgs[("body", "materials")] == "材料 至少需要 1 项"
    assert msgs[("body", "address", "phone")] == "联系电话 格式不正确"
    assert msgs[("body", "address", "line")] == "address.line 为必填项"  # no title: the field's path
    assert msgs[("body", "note")] == "note 长度不能超过 10 个字符"
    assert msgs[("body", "extra")] == "extra 不是可接受的字段"
    assert r.json()["detail"].startswith("页码 不能小于 1；")

    r = await labelled.post("/withdrawals", json={"materials": ["照片", 3], "amount_fen": "一百"})
    msgs = {tuple(e["loc"]): e["msg"] for e in chinese_only(r.json())}
    assert msgs[("body", "id_number")] == "身份证号码 为必填项"
    assert msgs[("body", "amount_fen")] == "金额 应为整数"
    assert msgs[("body", "materials", "1")] == "材料 第 2 项 应为文本"

    r = await labelled.post("/uploads", data={"material": "照"})
    msgs = {tuple(e["loc"]): e["msg"] for e in chinese_only(r.json())}
    assert msgs[("body", "material")] == "材料名称 长度不能少于 2 个字符"


def test_every_error_type_has_a_chinese_message_and_unknown_ones_fall_back() -> None:
    from app_api.core.validation_zh import TEMPLATES, chinese_errors

    for kind, template in TEMPLATES.items():
        assert CJK.search(template) and "{label}" in template, kind
    [e] = chinese_errors([{"type": "some_future_type", "loc": ("body", "x"), "msg": "Input should be..."}])
    assert e["msg"] == "x 的值不正确"
    # A validator's Chinese message is kept; an English one is not shown.
    errors = [
        {"type": "value_error", "loc": ("body", "t"), "msg": "Value error, 时间格式应为 HH:MM（例如 22:00）",
         "ctx": {"error": ValueError("时间格式应为 HH:MM（例如 22:00）")}},
        {"type": "value_error", "loc": ("body",), "msg": "Value error, min > max",
         "ctx": {"error": ValueError("min > max")}},
    ]  # fmt: skip
    assert [e["msg"] for e in chinese_errors(errors)] == [
        "t 时间格式应为 HH:MM（例如 22:00）",
        "请求内容 的值不正确",
    ]
