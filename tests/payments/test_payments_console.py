"""The finance console in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from pathlib import Path

import pytest
import sqlalchemy as sa

from app_api.core.clock import CHINA_TZ
from app_api.core.db import session_scope
from payments.models import PaymentOrder
from payments.orders import create_order
from tests.conftest import new_phone, sms_code

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


CONSOLE = "/api/v1/payments/finance/console"


async def staff(roles: list[str]) -> tuple[str, str]:
    """A staff account with a known password: (phone, password)."""
    from app_api.platform.accounts.service import create_staff

    phone, password = new_phone(), "Pw-" + secrets.token_hex(6)
    async with session_scope() as s:
        await create_staff(s, phone=phone, password=password, roles=roles)
    return phone, password


async def log_in(page, client, phone: str, password: str) -> None:
    """What a staff member does on the login page: phone, 发送验证码, the code from the SMS, password, 登录."""
    await page.get_by_label("手机号").fill(phone)
    await page.get_by_role("button", name="发送验证码", exact=True).click()
    await page.wait_for_load_state()
    assert "验证码已发送" in await page.inner_text("#message")
    await page.get_by_label("短信验证码").fill(await sms_code(client, phone))
    await page.get_by_label("密码").fill(password)
    await page.get_by_role("button", name="登录", exact=True).click()
    await page.wait_for_load_state()


async def test_console_start_run_resolve_export(ledger, client, login, tmp_path):
    from playwright.async_api import async_playwright
    from test_payments_reconcile import fresh_merchant

    finance_phone, finance_password = await staff(["finance"])
    resident = await login()
    account = (await client.get("/api/v1/me", headers=resident)).json()["id"]
    day = dt.date(2023, 6, 1) + dt.timedelta(days=secrets.randbelow(300))
    async with fresh_merchant(ledger, "wechat_v2"):
        async with session_scope() as s:
            order = await create_order(
                s,
                account_id=account,
                purpose="testcol.bill",
                purpose_ref="CON" + secrets.token_hex(4),
                amount_fen=4560,
                description="水费",
                provider="wechat_v2",
                channel="app",
            )
            await s.exec(
                sa.update(PaymentOrder)
                .where(PaymentOrder.id == order.id)
                .values(
                    status="paid",
                    paid_at=dt.datetime.combine(day, dt.time(10), tzinfo=CHINA_TZ),
                    provider_txn_id="CONSOLE1",
                )
            )

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                context = await browser.new_context(base_url=ledger.url, accept_downloads=True)
                page = await context.new_page()
                # Not logged in: the console sends the browser to the login page, and back after it.
                await page.goto(CONSOLE)
                assert "/api/v1/console/login" in page.url and await page.title() == "工作人员登录 · 我家亳州"
                await log_in(page, client, finance_phone, finance_password)
                assert page.url == ledger.url + CONSOLE
                assert await page.title() == "财务对账 · 我家"
                cookies = {c["name"]: c for c in await context.cookies()}
                assert (
                    cookies["wojia_console"]["httpOnly"] and cookies["wojia_console"]["sameSite"] == "Strict"
                )
                assert cookies["wojia_console_refresh"]["path"] == "/api/v1/console/"
                await page.select_option("select[name=provider]", "wechat_v2")
                await page.fill("input[name=bill_date]", day.isoformat())
                await page.click("#start-run button[type=submit]")
                await page.wait_for_url("**/console/runs/*")
                run_url = page.url
                for _ in range(100):  # the page refreshes itself while the run is in progress
                    status = page.locator("#status")
                    if await status.count() and "已完成" in await status.inner_text():
                        break
                    await asyncio.sleep(0.1)
                    await page.goto(run_url)
                assert "已完成" in await page.inner_text("#status")
                assert "45.60" in await page.inner_text("#totals")
                row = page.locator(f"tr[data-category=missing_at_provider]:has-text('{order.out_trade_no}')")
                assert await row.count() == 1
                assert await page.inner_text("#unresolved") == "1"

                await row.locator("input[name=note]").fill("渠道延迟入账，已人工核实")
                await row.locator("button").click()
                await page.wait_for_load_state()
                assert await page.inner_text("#unresolved") == "0"
                assert "已处理：渠道延迟入账，已人工核实" in await page.inner_text("#items")

                async with page.expect_download() as info:
                    await page.click("#export-csv")
                download = await info.value
                target = tmp_path / "export.csv"
                await download.save_as(target)
                text = target.read_text(encoding="utf-8-sig")
                assert order.out_trade_no in text and "账本有、渠道无" in text and "45.60" in text

                await page.goto(CONSOLE)
                assert day.isoformat() in await page.inner_text("#runs")

                # 退出登录: back on the login page, and the console asks for a login again.
                await page.get_by_role("button", name="退出登录").click()
                await page.wait_for_load_state()
                assert "/api/v1/console/login" in page.url and await page.locator("#login").count() == 1
                await page.goto(CONSOLE)
                assert "/api/v1/console/login" in page.url
            finally:
                await browser.close()

        # A staff member without the finance role logs in but is not served the console.
        reviewer_phone, reviewer_password = await staff(["reviewer"])
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                context = await browser.new_context(base_url=ledger.url)
                page = await context.new_page()
                await page.goto(CONSOLE)
                responses = []
                page.on("response", lambda r: responses.append(r))
                await log_in(page, client, reviewer_phone, reviewer_password)
                assert page.url == ledger.url + CONSOLE
                assert responses[-1].status == 403 and "财务人员" in await page.content()
            finally:
                await browser.close()
