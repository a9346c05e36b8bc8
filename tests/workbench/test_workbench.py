"""The staff workbench in a real browser (Debian's chromium driven by Playwright): a bank officer's
loan review end to end, another institution's officer and another role refused with the 403 page,
an admin disabling a column of the residents' home, a double-submitted form, an expired session.

Set ``WORKBENCH_SCREENSHOTS=1`` to save the screens' screenshots into ``docs/workbench/``."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from app_api.core.db import session_scope
from tests.conftest import new_phone, sms_code

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

LOANS = "/api/v1/columns/loans"
QUEUE = f"{LOANS}/workbench/"
COLUMNS = "/api/v1/workbench/admin/columns"
SHOTS = Path(__file__).parents[2] / "docs" / "workbench"


async def staff(roles: list[str], **fields: Any) -> tuple[str, str]:
    """A staff account with a known password: (phone, password)."""
    from app_api.platform.accounts.service import create_staff

    phone, password = new_phone(), "Pw-" + secrets.token_hex(6)
    async with session_scope() as s:
        await create_staff(s, phone=phone, password=password, roles=roles, **fields)
    return phone, password


async def institution(client: Any, login: Any, name: str) -> tuple[str, dict[str, str]]:
    """An institution and the bearer headers of one of its officers (for the API set-up)."""
    admin = await login(roles=["admin"])
    code = "bank_" + secrets.token_hex(4)
    r = await client.post(
        f"{LOANS}/admin/institutions", headers=admin, json={"code": code, "name": name, "kind": "bank"}
    )
    assert r.status_code == 201, r.text
    inst = r.json()["id"]
    return inst, await login(roles=["bank_officer"], institution_id=inst)


async def loan_application(client: Any, login: Any, officer: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A product of the officer's institution and an L3 resident's application to it: (id, resident)."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.citizen_id import make
    from identity.step_up import issue_step_up

    r = await client.post(
        f"{LOANS}/officer/products",
        headers=officer,
        json={
            "name": "安居贷",
            "min_amount_fen": 1_000_000,
            "max_amount_fen": 30_000_000,
            "min_term_months": 6,
            "max_term_months": 60,
            "min_rate_bp": 345,
            "max_rate_bp": 600,
            "applicant_types": ["individual"],
            "materials": ["身份证", "收入证明"],
        },
    )
    assert r.status_code == 201, r.text
    resident = await login(level=3)
    me = (await client.get("/api/v1/me", headers=resident)).json()
    async with session_scope() as s:
        a = await s.get(Account, me["id"])
        assert a is not None
        a.real_name_enc = encrypt_str("周永刚", aad="name")
        a.id_number_enc = encrypt_str(make("341623", dt.date(1979, 8, 2), 17), aad="id_number")
        s.add(a)
    r = await client.post(
        f"{LOANS}/applications",
        headers={**resident, "X-Step-Up-Token": await issue_step_up(me["id"], "loans.apply")},
        json={
            "product_id": r.json()["id"],
            "amount_fen": 20_000_000,
            "term_months": 36,
            "purpose": "购买家用轿车",
            "consent": {"scopes": ["identity.name", "identity.id_number", "contact.phone"], "agreed": True},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["id"], resident


async def log_in(page: Any, client: Any, phone: str, password: str) -> None:
    """What a staff member does on the login page: phone, 发送验证码, the code, password, 登录."""
    await page.get_by_label("手机号").fill(phone)
    await page.get_by_role("button", name="发送验证码", exact=True).click()
    await page.wait_for_load_state()
    await page.get_by_label("短信验证码").fill(await sms_code(client, phone))
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录", exact=True).click()
    await page.wait_for_load_state()


@asynccontextmanager
async def browser_page(base_url: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = await browser.new_context(base_url=base_url, viewport={"width": 1366, "height": 768})
            yield await context.new_page()
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    if os.environ.get("WORKBENCH_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def submit(page: Any, form: str) -> None:
    async with page.expect_navigation():
        await page.locator(f"#form-{form} button[type=submit]").click()


async def events(application_id: str, action: str) -> int:
    from columns.loans.models import ApplicationEvent

    async with session_scope() as s:
        return int(
            (
                await s.exec(
                    sa.select(sa.func.count())
                    .select_from(ApplicationEvent)
                    .where(
                        ApplicationEvent.application_id == application_id, ApplicationEvent.action == action
                    )
                )
            ).one()[0]
        )


async def test_bank_officer_approves_a_loan_end_to_end(client, login, live_url):
    inst, officer = await institution(client, login, "亳州药都农村商业银行")
    app_id, resident = await loan_application(client, login, officer)
    phone, password = await staff(["bank_officer"], institution_id=inst)
    async with browser_page(live_url) as page:
        await page.goto(QUEUE)
        assert "/api/v1/console/login" in page.url
        await log_in(page, client, phone, password)
        assert page.url == live_url + QUEUE and await page.title() == "贷款审批 · 我家亳州"
        row = page.locator(f"#queue tr[data-id='{app_id}']")
        assert await row.count() == 1 and "已提交" in await row.inner_text()
        assert await page.locator("nav a", has_text="贷款审批").count() == 1
        assert await page.locator("nav a", has_text="栏目管理").count() == 0
        await shot(page, "loans-queue")
        await row.get_by_role("link").click()
        await page.wait_for_load_state()
        assert "周永刚" in await page.inner_text("#applicant")
        assert "已提交" in await page.inner_text("#status")
        # Each action says what the resident will be told before it is confirmed.
        assert "居民将收到通知：贷款状态更新为「已受理」" in await page.inner_text("#form-accept")
        await submit(page, "accept")
        assert "已受理" in await page.inner_text("#status")
        assert "居民已收到通知" in await page.inner_text("#message")

        # Bad input: the Chinese message next to the field, nothing done.
        await submit(page, "request-info")
        assert "请填写补充要求" in await page.inner_text("#form-request-info .field-error")
        await page.get_by_label("年利率（%）").fill("7.20")
        await page.get_by_label("批准金额（元）").fill("180000")
        await page.get_by_label("期限（月）").fill("36")
        await submit(page, "approve")
        error = page.locator("#e-rate_pct")
        assert "利率不在该产品公布的利率范围内" in await error.inner_text()
        assert await page.get_by_label("年利率（%）").get_attribute("aria-invalid") == "true"
        assert await page.get_by_label("批准金额（元）").input_value() == "180000"
        await shot(page, "loans-application-error")
        assert "已受理" in await page.inner_text("#status")

        await page.get_by_label("年利率（%）").fill("4.50")
        await submit(page, "approve")
        assert "已审批通过" in await page.inner_text("#status")
        assert "180000.00 元，年利率 4.50%，36 个月" in await page.inner_text("#approved")
        await page.get_by_label("放款金额（元）").fill("200000")
        await submit(page, "disburse")
        assert "批准金额180000.00元" in await page.inner_text("#e-disburse_yuan")
        await page.get_by_label("放款金额（元）").fill("180000")
        await submit(page, "disburse")
        assert "已放款" in await page.inner_text("#status")
        assert await page.locator("#no-actions").count() == 1
        await shot(page, "loans-application")

        mine = (await client.get(f"{LOANS}/applications/{app_id}", headers=resident)).json()
        assert mine["status"] == "disbursed" and mine["approved_rate_bp"] == 450
        assert mine["disbursed_fen"] == 18_000_000

        # The resident withdraws the consent: the page says so and shows none of the data.
        [c] = [
            c
            for c in (await client.get("/api/v1/me/consents", headers=resident)).json()["consents"]
            if c["purpose"] == "loans.apply"
        ]
        assert (await client.delete(f"/api/v1/me/consents/{c['id']}", headers=resident)).status_code == 200
        await page.reload()
        assert "授权已撤回" in await page.inner_text("#applicant")
        assert "周永刚" not in await page.content()
        await shot(page, "loans-consent-withdrawn")


async def test_reject_needs_a_reason(client, login, live_url):
    inst, officer = await institution(client, login, "亳州谯城农商银行")
    app_id, resident = await loan_application(client, login, officer)
    phone, password = await staff(["bank_officer"], institution_id=inst)
    async with browser_page(live_url) as page:
        await page.goto(f"{LOANS}/workbench/applications/{app_id}")
        await log_in(page, client, phone, password)
        await submit(page, "accept")
        await submit(page, "reject")
        assert "请填写拒绝原因" in await page.inner_text("#e-reason")
        assert "已受理" in await page.inner_text("#status")
        await page.get_by_label("拒绝原因（必填）").fill("收入证明不足以覆盖月供")
        await submit(page, "reject")
        assert "未通过" in await page.inner_text("#status")
    mine = (await client.get(f"{LOANS}/applications/{app_id}", headers=resident)).json()
    assert mine["status"] == "rejected" and mine["reject_reason"] == "收入证明不足以覆盖月供"


async def test_other_institution_and_other_roles_get_the_403_page(client, login, live_url):
    _, officer = await institution(client, login, "亳州利辛农商银行")
    app_id, _ = await loan_application(client, login, officer)
    other_inst, _ = await institution(client, login, "亳州蒙城农商银行")
    phone, password = await staff(["bank_officer"], institution_id=other_inst)
    page_url = f"{LOANS}/workbench/applications/{app_id}"
    async with browser_page(live_url) as page:
        responses: list[Any] = []
        page.on("response", lambda r: responses.append(r))
        await page.goto(page_url)
        await log_in(page, client, phone, password)
        assert page.url == live_url + page_url
        assert responses[-1].status == 403
        assert "无权查看" in await page.inner_text("#forbidden") and "周永刚" not in await page.content()
        await shot(page, "forbidden")
        # The other institution's queue does not list it; the admins' screen is not theirs.
        await page.goto(QUEUE)
        assert await page.locator(f"#queue tr[data-id='{app_id}']").count() == 0
        r = await page.goto(COLUMNS)
        assert r is not None and r.status == 403 and "管理员" in await page.inner_text("#forbidden")

    # A reviewer typing the bank officers' URL gets the 403 page too.
    phone, password = await staff(["reviewer"])
    async with browser_page(live_url) as page:
        await page.goto(QUEUE)
        responses = []
        page.on("response", lambda r: responses.append(r))
        await log_in(page, client, phone, password)
        assert responses[-1].status == 403 and "金融机构人员" in await page.inner_text("#forbidden")


async def test_double_submitted_approve_does_one_thing(client, login, live_url):
    inst, officer = await institution(client, login, "亳州涡阳农商银行")
    app_id, resident = await loan_application(client, login, officer)
    assert (
        await client.post(f"{LOANS}/officer/applications/{app_id}/accept", headers=officer)
    ).status_code == 200
    phone, password = await staff(["bank_officer"], institution_id=inst)
    page_url = f"{LOANS}/workbench/applications/{app_id}"
    async with browser_page(live_url) as page:
        await page.goto(page_url)
        await log_in(page, client, phone, password)
        form = page.locator("#form-approve")
        fields = {
            "csrf": await form.locator("input[name=csrf]").input_value(),
            "idem": await form.locator("input[name=idem]").input_value(),
            "amount_yuan": "150000",
            "rate_pct": "4.35",
            "term_months": "24",
        }
        url = f"{page_url}/approve"
        # The same form sent twice at once (a double click, a resent request): one approval.
        first, second = await asyncio.gather(
            page.request.post(url, form=fields), page.request.post(url, form=fields)
        )
        assert first.status == second.status == 200
        assert first.url == second.url == f"{live_url}{page_url}?done=approve"
        assert await events(app_id, "approve") == 1
        # And once more after it is done: the same page, still one approval, no error.
        again = await page.request.post(url, form=fields)
        assert (
            again.status == 200 and "已审批通过" in await again.text() and "不允许" not in await again.text()
        )
        assert await events(app_id, "approve") == 1
        # A form without its CSRF value does nothing.
        forged = await page.request.post(url, form={**fields, "csrf": "x", "idem": secrets.token_urlsafe(18)})
        assert forged.status == 403
    mine = (await client.get(f"{LOANS}/applications/{app_id}", headers=resident)).json()
    assert mine["status"] == "approved" and mine["approved_amount_fen"] == 15_000_000


async def test_expired_session_goes_to_login_and_back(client, login, live_url, monkeypatch):
    from app_api.platform.accounts import tokens
    from app_api.platform.accounts.errors import TokenExpired
    from app_api.platform.accounts.service import find_by_phone

    inst, officer = await institution(client, login, "亳州药都银行")
    app_id, _ = await loan_application(client, login, officer)
    phone, password = await staff(["bank_officer"], institution_id=inst)
    page_url = f"{LOANS}/workbench/applications/{app_id}"
    # A console login of three hours ago: its access token long expired, its refresh cookie gone.
    past = tokens.utcnow() - dt.timedelta(hours=3)
    monkeypatch.setattr(tokens, "utcnow", lambda: past)
    async with session_scope() as s:
        account = await find_by_phone(s, phone)
        assert account is not None
        expired = (await tokens.issue_pair(s, account.id)).access_token
    monkeypatch.undo()
    with pytest.raises(TokenExpired):
        tokens.decode_access(expired)
    async with browser_page(live_url) as page:
        await page.context.add_cookies(
            [{"name": "wojia_console", "value": expired, "url": live_url + "/api/v1/", "httpOnly": True}]
        )
        await page.goto(page_url)
        assert "/api/v1/console/login" in page.url and await page.locator("#login").count() == 1
        await log_in(page, client, phone, password)
        assert page.url == live_url + page_url and "已提交" in await page.inner_text("#status")


async def test_admin_disables_a_column_and_the_home_drops_it(client, login, live_url):
    admin_api = await login(roles=["admin"])
    columns = (await client.get("/api/v1/admin/columns", headers=admin_api)).json()["columns"]
    target = next(c for c in columns if c["enabled"] and c["slug"] != "loans")
    slug, name = target["slug"], target["name"]

    def home_slugs(body: dict[str, Any]) -> set[str]:
        return {c["slug"] for cat in body["categories"] for c in cat["columns"]}

    assert slug in home_slugs((await client.get("/api/v1/home")).json())
    phone, password = await staff(["admin"])
    try:
        async with browser_page(live_url) as page:
            await page.goto(COLUMNS)
            await log_in(page, client, phone, password)
            assert page.url == live_url + COLUMNS and await page.title() == "栏目管理 · 我家亳州"
            await shot(page, "admin-columns")
            row = page.locator(f"#columns tr[data-slug='{slug}']")
            async with page.expect_navigation():
                await row.get_by_role("button", name=f"停用{name}").click()
            assert "已停用" in await page.inner_text("#message")
            assert await row.get_attribute("data-enabled") == "0"
            for _ in range(50):  # the home is cached in memory for a moment after the change
                if slug not in home_slugs((await client.get("/api/v1/home")).json()):
                    break
                await asyncio.sleep(0.1)
            assert slug not in home_slugs((await client.get("/api/v1/home")).json())

            # Order: moving the second column up puts it first.
            second = await page.locator("#columns tbody tr").nth(1).get_attribute("data-slug")
            async with page.expect_navigation():
                await (
                    page.locator("#columns tbody tr")
                    .nth(1)
                    .get_by_role("button", name="上移", exact=False)
                    .click()
                )
            assert "顺序已保存" in await page.inner_text("#message")
            assert await page.locator("#columns tbody tr").first.get_attribute("data-slug") == second

            async with page.expect_navigation():
                await row.get_by_role("button", name=f"启用{name}").click()
            assert await row.get_attribute("data-enabled") == "1"

            # The workbench home lists the admin's screens only; the skip link is the first Tab stop.
            await page.goto("/api/v1/workbench/")
            assert await page.locator("#screens a").all_inner_texts() == [
                "效能督办",
                "事项目录",
                "栏目管理",
                "第三方栏目",
                "人员与角色",
                "审计核验",
            ]
            await page.keyboard.press("Tab")
            assert await page.evaluate("document.activeElement.textContent") == "跳到正文"
            # Every department's figures for an admin; the navigation marks the page it is on.
            async with page.expect_navigation():
                await page.locator("#screens a", has_text="效能督办").click()
            assert await page.title() == "效能督办 · 我家亳州"
            assert await page.locator("#figures").count() == 1 and await page.locator("#overdue").count() == 1
            assert await page.locator("nav a[aria-current=page]").all_inner_texts() == ["效能督办"]
            await shot(page, "supervision")
    finally:
        await client.patch(f"/api/v1/admin/columns/{slug}", headers=admin_api, json={"enabled": True})
    for _ in range(50):
        if slug in home_slugs((await client.get("/api/v1/home")).json()):
            break
        await asyncio.sleep(0.1)
    assert slug in home_slugs((await client.get("/api/v1/home")).json())
