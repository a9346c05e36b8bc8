"""The admins' workbench screens: staff accounts and roles, and the audit-chain check.

HTTP tests send the forms as a browser would (bearer header instead of the cookie, so no CSRF
field); the browser test walks an admin disabling a staff account and checking the audit chain.
Set ``WORKBENCH_SCREENSHOTS=1`` to save the screenshots into ``docs/workbench/``."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx
import pytest

from app_api.core.db import session_scope, sessionmaker
from tests.conftest import LoginFn, new_phone
from tests.workbench.test_workbench import CHROMIUM, browser_page, log_in, shot, staff

STAFF = "/api/v1/workbench/admin/staff"
AUDIT = "/api/v1/workbench/admin/audit"


def idem() -> str:
    return secrets.token_urlsafe(18)


async def account_of(phone: str) -> Any:
    from app_api.platform.accounts.service import find_by_phone

    async with sessionmaker()() as s:
        return await find_by_phone(s, phone)


def field_error(html: str, name: str) -> str:
    m = re.search(rf'id="e-{name}"[^>]*>([^<]*)<', html)
    return m.group(1) if m else ""


async def test_create_staff_validates_beside_each_field_and_creates_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    phone = new_phone()
    bad = {"phone": "1234", "password": "short", "roles": ["reviewer"], "idem": idem()}
    r = await client.post(STAFF, headers=admin, data=bad)
    assert r.status_code == 422
    assert field_error(r.text, "phone") == "请输入11位手机号"
    assert field_error(r.text, "password") == "初始密码至少10位"
    assert field_error(r.text, "department") == "审核人员须填写所属部门"
    r = await client.post(
        STAFF, headers=admin, data={"phone": phone, "password": "Pw-0123456789", "idem": idem()}
    )
    assert field_error(r.text, "roles") == "请至少选择一个工作人员角色"
    r = await client.post(
        STAFF,
        headers=admin,
        data={
            "phone": phone,
            "password": "Pw-0123456789",
            "roles": ["agent"],
            "station_id": "nope",
            "idem": idem(),
        },
    )
    assert field_error(r.text, "station_id") == "代办点不存在，请重新选择"
    assert await account_of(phone) is None  # nothing half-written

    form = {
        "phone": phone,
        "password": "Pw-0123456789",
        "roles": ["reviewer", "bank_officer"],
        "department": "市民政局",
        "institution_id": "bank_bozhou",
        "idem": idem(),
    }
    first = await client.post(STAFF, headers=admin, data=form)
    second = await client.post(STAFF, headers=admin, data=form)  # the same form sent twice
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    created = await account_of(phone)
    assert created is not None and sorted(created.roles) == ["bank_officer", "reviewer"]
    assert created.department == "市民政局" and created.institution_id == "bank_bozhou"
    assert first.headers["location"] == f"{STAFF}/{created.id}?done=created"
    # The new member of staff signs in with that password.
    code_sent = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert code_sent.status_code == 202
    from tests.conftest import sms_code

    r = await client.post(
        "/api/v1/auth/staff/login",
        json={"phone": phone, "code": await sms_code(client, phone), "password": "Pw-0123456789"},
    )
    assert r.status_code == 200
    # A phone that already belongs to staff is not overwritten.
    r = await client.post(STAFF, headers=admin, data={**form, "idem": idem(), "password": "Other-0123456"})
    assert field_error(r.text, "phone").startswith("该手机号已是工作人员账号")
    # The list finds it by phone, masked.
    r = await client.get(STAFF, headers=admin, params={"phone": phone})
    table = r.text.split('id="staff"')[1]
    assert f'data-id="{created.id}"' in table and phone not in table and phone[-4:] in table


async def test_roles_change_and_disable_hold_from_the_next_request(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    reviewer_phone = new_phone()
    reviewer = await login(phone=reviewer_phone, roles=["reviewer"], department="市民政局")
    target = await account_of(reviewer_phone)
    page = f"{STAFF}/{target.id}"
    assert (await client.get("/api/v1/workbench/", headers=reviewer)).status_code == 200

    r = await client.post(f"{page}/roles", headers=admin, data={"roles": ["reviewer"], "idem": idem()})
    assert r.status_code == 422 and field_error(r.text, "department") == "审核人员须填写所属部门"
    r = await client.post(
        f"{page}/roles",
        headers=admin,
        data={"roles": ["reviewer", "admin"], "department": "市人社局", "idem": idem()},
    )
    assert r.status_code == 303
    async with session_scope() as s:
        from app_api.platform.accounts.models import Account

        a = await s.get(Account, target.id)
        assert a is not None and sorted(a.roles) == ["admin", "reviewer"] and a.department == "市人社局"
    # The change holds at once: the reviewer now opens the admins' page.
    assert (await client.get(STAFF, headers=reviewer)).status_code == 200

    key = idem()
    r1 = await client.post(f"{page}/active", headers=admin, data={"active": "0", "idem": key})
    r2 = await client.post(f"{page}/active", headers=admin, data={"active": "0", "idem": key})
    assert r1.status_code == r2.status_code == 303 and r1.headers["location"].endswith("done=disabled")
    refused = await client.get("/api/v1/workbench/", headers=reviewer)
    assert refused.status_code == 403 and refused.json()["code"] == "auth.account_disabled"
    from sqlmodel import select

    from app_api.platform.audit.models import AuditEvent

    async with sessionmaker()() as s:
        disabled = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "account.disabled", AuditEvent.subject_id == target.id
                )
            )
        ).all()
    assert len(disabled) == 1  # the double submit disabled once

    # An admin can neither take away their own admin role nor disable themselves.
    me = (await client.get("/api/v1/me", headers=admin)).json()["id"]
    r = await client.post(
        f"{STAFF}/{me}/roles",
        headers=admin,
        data={"roles": ["reviewer"], "department": "市民政局", "idem": idem()},
    )
    assert r.status_code == 422 and field_error(r.text, "roles") == "不能取消自己的管理员角色"
    r = await client.post(f"{STAFF}/{me}/active", headers=admin, data={"active": "0", "idem": idem()})
    assert r.status_code == 422 and "不能停用自己的账号" in r.text
    async with sessionmaker()() as s:
        a = await s.get(Account, me)
        assert a is not None and a.is_active and "admin" in a.roles


async def test_other_roles_get_the_403_page(client: httpx.AsyncClient, login: LoginFn) -> None:
    reviewer = await login(roles=["reviewer"], department="市民政局")
    for url in (STAFF, AUDIT, f"{AUDIT}/verify"):
        r = await client.get(url, headers=reviewer)
        assert r.status_code == 403 and 'id="forbidden"' in r.text and "管理员" in r.text
    r = await client.post(STAFF, headers=reviewer, data={"phone": new_phone(), "idem": idem()})
    assert r.status_code == 403 and 'id="forbidden"' in r.text


async def test_audit_page_checks_the_chain_and_lists_entries_without_their_data(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from app_api.platform.audit.service import verify_chain

    admin = await login(roles=["admin"])
    reviewer_phone = new_phone()
    await login(phone=reviewer_phone, roles=["reviewer"], department="市民政局")
    target = await account_of(reviewer_phone)
    r = await client.get(AUDIT, headers=admin, params={"subject_id": target.id})
    assert r.status_code == 200 and "account.roles_changed" in r.text
    assert '"before"' not in r.text and "reviewer" not in r.text.split('id="entries"')[1]
    r = await client.get(AUDIT, headers=admin, params={"action": "Bad Action!"})
    assert r.status_code == 422 and field_error(r.text, "action").startswith("操作类型只含")

    r = await client.get(f"{AUDIT}/verify", headers=admin)
    async with sessionmaker()() as s:
        report = await verify_chain(s)
    assert r.status_code == 200
    if report.ok:  # entries written in between only add to the count
        m = re.search(r"审计链完整：已核验 (\d+) 条记录", r.text)
        assert m and int(m.group(1)) <= report.checked
    else:
        assert f"第 {report.first_broken_seq} 条记录" in r.text


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_admin_disables_a_staff_account_and_checks_the_audit_chain(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    officer_phone = new_phone()
    officer = await login(phone=officer_phone, roles=["bank_officer"], institution_id="bank_bozhou")
    target = await account_of(officer_phone)
    phone, password = await staff(["admin"])
    async with browser_page(live_url) as page:
        await page.goto(STAFF)
        await log_in(page, client, phone, password)
        assert page.url == live_url + STAFF and await page.title() == "人员与角色 · 我家亳州"
        # Bad input beside the field, the values kept.
        await page.get_by_label("手机号（必填）").fill("12345")
        async with page.expect_navigation():
            await page.locator("#form-create button[type=submit]").click()
        assert await page.inner_text("#e-phone") == "请输入11位手机号"
        assert await page.get_by_label("手机号（必填）").get_attribute("aria-invalid") == "true"
        await page.get_by_label("手机号", exact=True).fill(officer_phone)
        async with page.expect_navigation():
            await page.get_by_role("button", name="查找").click()
        row = page.locator(f"#staff tr[data-id='{target.id}']")
        assert await row.count() == 1 and "金融机构人员" in await row.inner_text()
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await shot(page, "admin-staff")
        async with page.expect_navigation():
            await row.get_by_role("link").click()
        assert "正常" in await page.inner_text("#state")
        async with page.expect_navigation():
            await page.get_by_role("button", name="停用账号").click()
        assert "账号已停用" in await page.inner_text("#message")
        assert "已停用" in await page.inner_text("#state")
        await shot(page, "admin-staff-account")
        refused = await client.get("/api/v1/workbench/", headers=officer)
        assert refused.status_code == 403

        await page.goto(AUDIT)
        assert await page.locator("nav a[aria-current=page]").all_inner_texts() == ["审计核验"]
        await page.get_by_label("对象编号").fill(target.id)
        async with page.expect_navigation():
            await page.locator("#search button[type=submit]").click()
        actions = await page.locator("#entries tbody tr td:nth-child(3)").all_inner_texts()
        assert "account.disabled" in actions and "account.roles_changed" in actions
        async with page.expect_navigation():
            await page.get_by_role("button", name="核验审计链").click()
        assert "审计链" in await page.inner_text("#chain")
        await shot(page, "admin-audit")


async def test_without_a_session_the_pages_go_to_the_login_and_back(client: httpx.AsyncClient) -> None:
    from urllib.parse import quote

    for url in (STAFF, AUDIT):
        r = await client.get(url, headers={"cookie": "wojia_console=expired.or.forged"})
        assert r.status_code == 303 and r.headers["location"].startswith("/api/v1/console/refresh?next=")
        r = await client.get(r.headers["location"])
        assert r.headers["location"] == f"/api/v1/console/login?next={quote(url, safe='')}"
    # A form sent without a session does nothing.
    r = await client.post(STAFF, data={"phone": new_phone(), "password": "Pw-0123456789", "roles": ["admin"]})
    assert r.status_code in (401, 403)
