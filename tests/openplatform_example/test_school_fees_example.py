"""The example third-party column (docs/examples/school_fees) as its own process against the platform
served on loopback, driven through Debian's Chromium by Playwright (issue 20, item 5).

An admin registers the column through the API; the resident opens it from the home screen in the
app's webview (played here: the app adds its one-time login ticket to the authorize URL and offers
the JS bridge that pays an order), refuses once, then signs in on the Chinese consent screen and is
sent back; the column reads only the claims granted; the resident pays through the WeChat Pay
sandbox; the column is told once (a redelivery is acknowledged, not recorded again), refunds part,
sends a templated message; finance lists the payment under the column's name; disabling the column
makes its next call to the platform fail and removes it from home."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from app_api.core.crypto import encrypt_str
from app_api.core.db import session_scope
from app_api.core.settings import get_settings
from app_api.platform.accounts.models import Account
from app_api.platform.openplatform import cashier_notify, cashier_sweep
from app_api.platform.openplatform.cashier_models import CashierNotice
from tests.columns.utilities.utilities_helpers import pay_at_provider, wait_until
from tests.conftest import LoginFn, free_port

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples" / "school_fees"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
API = "/api/v1"
FEE_FEN = 128000
REFUND_FEN = 8000
TEMPLATE = "您为$student缴纳的$term学费已退回$amount元，将原路退回支付账户。"


@pytest.fixture(scope="module")
async def pay_sandbox(live_url: str) -> AsyncIterator[dict[str, str]]:
    """The payment providers' sandboxes on loopback, telling the app served on loopback."""
    from payments import registry
    from payments.sandbox.common import serve_in_thread

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    providers, sandboxes = registry.build_sandbox_providers(base)
    server = serve_in_thread(sandboxes.asgi_app(), port=port)
    saved = (registry._providers, registry._sandboxes, registry._notify_base)
    registry.configure(providers, notify_base=live_url, sandbox_set=sandboxes)
    yield {name: f"{base}/{name}" for name in ("wechat_v2", "wechat_v3", "alipay")}
    with registry._lock:
        registry._providers, registry._sandboxes, registry._notify_base = saved
    server.stop()


@dataclass
class Registered:
    id: str
    name: str
    client_id: str
    client_secret: str
    cashier_key: str


async def register_column(
    client: httpx.AsyncClient, admin: dict[str, str], public: str, notify_port: int
) -> Registered:
    """What an admin does for a school that runs its own column: register it, open its cashier."""
    name = "学费缴纳" + secrets.token_hex(2)
    r = await client.post(
        f"{API}/admin/external-columns",
        headers=admin,
        json={
            "name": name,
            "icon": f"{public}/icon.png",
            "category": "教育培训",
            "url": f"{public}/",
            "identity_level": 1,
            "allowed_scopes": ["openid", "phone", "real_name"],
            "redirect_uris": [f"{public}/oidc/callback"],
            "operator_contact": "亳州市第一中学财务室 0558-5550123",
        },
    )
    assert r.status_code == 201, r.text
    column = r.json()
    r = await client.put(
        f"{API}/admin/external-columns/{column['id']}/cashier",
        headers=admin,
        json={"notify_url": f"http://127.0.0.1:{notify_port}/cashier/notify", "sub_accounts": ["school-01"]},
    )
    assert r.status_code == 200, r.text
    return Registered(
        column["id"], name, column["client_id"], column["client_secret"], r.json()["cashier_secret"]
    )


@contextlib.asynccontextmanager
async def example_process(env: dict[str, str], port: int, notify_port: int) -> AsyncIterator[str]:
    """``python -m school_fees`` in its own process; yields its back-office base URL once it answers."""
    with tempfile.TemporaryDirectory(prefix="school-fees-") as state, tempfile.TemporaryFile() as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "school_fees",
            "--port",
            str(port),
            "--notify-port",
            str(notify_port),
            "--state-dir",
            state,
            cwd=EXAMPLE_DIR,
            env={"PATH": os.environ.get("PATH", ""), "SCHOOL_FEES_DB": f"{state}/school_fees.db", **env},
            stdout=log,
            stderr=log,
        )

        def output() -> str:
            log.seek(0)
            return log.read().decode(errors="replace")[-4000:]

        base = f"http://127.0.0.1:{notify_port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as c:
                for _ in range(300):
                    if proc.returncode is not None:
                        pytest.fail(f"the example exited {proc.returncode}:\n{output()}")
                    try:
                        if (await c.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"the example did not answer:\n{output()}")
            yield base
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            print(output())


@contextlib.asynccontextmanager
async def webview(
    live_url: str,
    public: str,
    new_ticket: Callable[[], Awaitable[str]],
    pay: Callable[[str], Awaitable[str]],
) -> AsyncIterator[Any]:
    """Chromium playing the app's webview: when a page of the column redirects to the platform's
    authorize endpoint, the app adds the resident's login to that URL as a one-time ticket (as a
    webview's navigation hook sees each redirect), and ``window.WojiaJSBridge.pay`` opens the app's
    cashier."""
    from playwright.async_api import Route, async_playwright

    authorize = f"{live_url}{API}/oidc/authorize?"

    async def carry_login(route: Route) -> None:
        answer = await route.fetch(max_redirects=0)
        location = answer.headers.get("location", "")
        if location.startswith(authorize):
            location += f"&ticket={await new_ticket()}"
            await route.fulfill(status=answer.status, headers={"location": location})
        else:
            await route.fulfill(response=answer)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            # The example's development certificate is self-signed. The pages' Content-Security-Policy
            # is enforced: the consent form's redirect back to the column must be allowed by it.
            context = await browser.new_context(ignore_https_errors=True, locale="zh-CN")
            await context.route(f"{public}/login", carry_login)
            await context.expose_function("wojiaPay", pay)
            await context.add_init_script("window.WojiaJSBridge = {pay: (id) => window.wojiaPay(id)};")
            yield await context.new_page()
        finally:
            await browser.close()


async def test_a_resident_pays_school_fees_at_the_example_column_in_a_real_browser(
    client: httpx.AsyncClient,
    login: LoginFn,
    live_url: str,
    pay_sandbox: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The platform's public address is the one the example and the browser reach it at.
    monkeypatch.setattr(get_settings(), "public_base_url", live_url)
    admin = await login(roles=["admin"])
    port, notify_port = free_port(), free_port()
    public = f"https://127.0.0.1:{port}"
    reg = await register_column(client, admin, public, notify_port)
    operator = "op-" + secrets.token_hex(12)
    env = {
        "SCHOOL_FEES_ISSUER": live_url,
        "SCHOOL_FEES_PUBLIC_URL": public,
        "SCHOOL_FEES_CLIENT_ID": reg.client_id,
        "SCHOOL_FEES_CLIENT_SECRET": reg.client_secret,
        "SCHOOL_FEES_CASHIER_KEY": reg.cashier_key,
        # It may read the real name but asks for the phone only: the consent lists what it asks.
        "SCHOOL_FEES_SCOPE": "openid phone",
        "SCHOOL_FEES_OPERATOR_TOKEN": operator,
        "SCHOOL_FEES_DEMO_FEE_FEN": str(FEE_FEN),
    }
    resident = await login()
    me = (await client.get(f"{API}/me", headers=resident)).json()
    async with session_scope() as s:  # a resident who completed real-name verification
        account = await s.get(Account, me["id"])
        assert account is not None
        account.real_name_enc = encrypt_str("王秀英", aad="name")
        s.add(account)

    async def new_ticket() -> str:
        r = await client.post(f"{API}/oidc/tickets", headers=resident)
        assert r.status_code == 200, r.text
        return str(r.json()["ticket"])

    bridge: list[dict[str, Any]] = []

    async def pay(order_id: str) -> str:
        """The app's cashier: show the order, pay with WeChat Pay, the resident confirms in the wallet."""
        shown = (await client.get(f"{API}/cashier/orders/{order_id}", headers=resident)).json()
        r = await client.post(
            f"{API}/cashier/orders/{order_id}/pay", headers=resident, json={"provider": "wechat_v2"}
        )
        started = r.json()
        await pay_at_provider(pay_sandbox, "wechat_v2", started["out_trade_no"], started["client_params"])
        bridge.append({"order_id": order_id, "shown": shown, "status": r.status_code, **started})
        return "paid"

    home = (await client.get(f"{API}/home", headers=resident)).json()
    [card] = [c for cat in home["categories"] for c in cat["columns"] if c.get("path") == f"{public}/"]
    assert card["name"] == reg.name and card["external"] is True

    authorize = f"{live_url}{API}/oidc/authorize?"
    async with (
        example_process(env, port, notify_port) as back_office,
        httpx.AsyncClient(base_url=back_office, headers={"authorization": f"Bearer {operator}"}) as office,
        webview(live_url, public, new_ticket, pay) as page,
    ):
        # Opened from the home screen; the resident first refuses, and the column learns nothing.
        await page.goto(card["path"])
        await page.get_by_role("link", name="使用我家亳州账号登录").click()
        await page.wait_for_url(lambda url: url.startswith(authorize))
        assert page.url.startswith(f"{live_url}{API}/oidc/authorize")
        assert await page.title() == f"授权登录 {reg.name}", (page.url, await page.inner_text("main"))
        heading = await page.locator("h1").inner_text()
        assert heading == f"“{reg.name}”申请使用您的亳州账号登录"
        scopes = [s.strip() for s in await page.locator("#scopes li").all_inner_texts()]
        assert scopes == ["识别您的身份（为该栏目单独生成的用户编号）", "您的手机号码"]
        assert "亳州市第一中学财务室" in await page.inner_text("main")
        await page.get_by_role("button", name="拒绝").click()
        await page.wait_for_url(lambda url: url.startswith(f"{public}/oidc/callback"))
        assert page.url.startswith(f"{public}/oidc/callback?error=access_denied")
        assert "您已拒绝授权" in await page.inner_text("#denied")
        assert (await office.get("/operator/residents")).json()["residents"] == []

        # Then consents, and is back at the column, signed in.
        await page.get_by_role("link", name="重新登录").click()
        await page.wait_for_url(lambda url: url.startswith(authorize))
        await page.get_by_role("button", name="同意并登录").click()
        await page.wait_for_url(f"{public}/fees")
        assert await page.title() == "学费缴纳 · 亳州市第一中学"
        phone = me.get("phone")
        shown_phone = await page.inner_text("#phone")
        assert shown_phone.startswith("139") and "****" in shown_phone
        if phone:
            assert shown_phone == phone[:3] + "****" + phone[-4:]
        # The real name exists but was not granted: the column has not read it.
        assert await page.inner_text("#name") == "未授权"
        [known] = (await office.get("/operator/residents")).json()["residents"]
        assert set(known["claims"]) == {"sub", "phone_number", "phone_number_verified"}
        assert known["scope"] == "openid phone" and "王秀英" not in str(known)
        row = page.locator("tr[data-bill]")
        assert "1280.00 元" in await row.inner_text() and "待缴费" in await row.inner_text()
        bill_id = await row.get_attribute("data-bill")

        # Payment: the column opens an order server-to-server, the app's cashier takes it.
        await row.get_by_role("button", name="缴费").click()
        await page.wait_for_url(f"{public}/fees/{bill_id}/pay")
        assert await page.inner_text("#amount") == "1280.00 元"
        await page.get_by_role("button", name="在我家亳州中支付").click()
        await page.wait_for_url(f"{public}/fees")
        [paid] = bridge
        assert paid["status"] == 200
        assert paid["shown"]["column_name"] == reg.name and paid["shown"]["amount_fen"] == FEE_FEN
        assert paid["shown"]["description"] == "亳州市第一中学2026年秋季学期学费"

        async def shows_paid() -> bool:
            await page.reload()
            return "已缴费" in await page.locator("tr[data-bill] .status").inner_text()

        await wait_until(shows_paid, timeout=30)

        # Told once: one notice, one delivery, recorded by the platform as delivered at the first try.
        [notice] = (await office.get("/operator/notices")).json()["notices"]
        assert notice["deliveries"] == 1 and notice["order_id"] == paid["order_id"]
        assert (
            notice["body"]["amount_fen"] == FEE_FEN and notice["body"]["out_trade_no"] == paid["out_trade_no"]
        )

        async def delivered() -> bool:
            async with session_scope() as s:
                n = await s.get(CashierNotice, notice["notice_id"])
                return n is not None and n.status == "delivered"

        await wait_until(delivered, timeout=10)
        # The platform's answer was lost: it posts again (signed anew); acknowledged, not recorded twice.
        async with session_scope() as s:
            await s.exec(
                sa.update(CashierNotice)
                .where(col(CashierNotice.id) == notice["notice_id"])
                .values(status="pending")
            )
        assert await cashier_notify.deliver(notice["notice_id"]) == "delivered"
        [again] = (await office.get("/operator/notices")).json()["notices"]
        assert again["deliveries"] == 2 and again["recorded_at"] == notice["recorded_at"]
        bills = (await office.get("/operator/bills")).json()["bills"]
        assert [(b["status"], b["amount_fen"]) for b in bills] == [("paid", FEE_FEN)]

        # Refund part (the workbook fee charged twice); more than is left is refused by the platform.
        refund_no = "SR" + secrets.token_hex(6)
        r = await office.post(
            f"/operator/bills/{bill_id}/refunds",
            json={"amount_fen": REFUND_FEN, "reason": "教辅资料费重复收取", "out_refund_no": refund_no},
        )
        assert r.status_code == 201, r.text
        over_no = "SR" + secrets.token_hex(6)
        r = await office.post(
            f"/operator/bills/{bill_id}/refunds", json={"amount_fen": FEE_FEN, "out_refund_no": over_no}
        )
        assert r.status_code == 502 and r.json()["code"] == "openplatform.cashier_refund_exceeds_paid", r.text

        async def told_refunded() -> bool:
            # The platform's refund sweep (every minute in a deployment) tells the column once the
            # ledger finished the refund.
            await cashier_sweep.notify_refunds()
            notices = (await office.get("/operator/notices")).json()["notices"]
            return any(n["body"].get("out_refund_no") == refund_no for n in notices)

        await wait_until(told_refunded, timeout=30)
        [told] = [
            n for n in (await office.get("/operator/notices")).json()["notices"] if n["event"] != "order.paid"
        ]
        assert told["event"] == "refund.succeeded" and told["deliveries"] == 1
        assert told["body"]["amount_fen"] == REFUND_FEN and told["body"]["order_refunded_fen"] == REFUND_FEN
        got = (await office.get(f"/operator/bills/{bill_id}")).json()
        assert got["order"]["refunded_fen"] == REFUND_FEN and got["bill"]["refunded_fen"] == REFUND_FEN
        assert [(x["out_refund_no"], x["status"]) for x in got["refunds"]] == [
            (refund_no, "succeeded"),
            (over_no, "refused"),
        ]
        await page.reload()
        assert "已缴费（已退款 80.00 元）" in await page.locator("tr[data-bill] .status").inner_text()

        # A templated message: proposed by the column, approved by an admin, sent to the resident.
        r = await office.post("/operator/templates", json={"key": "tuition_refund", "text": TEMPLATE})
        assert r.status_code == 201 and r.json()["status"] == "pending", r.text
        params = {"student": "李明轩", "term": "2026年秋季学期", "amount": "80.00"}
        r = await office.post(
            f"/operator/bills/{bill_id}/messages", json={"template": "tuition_refund", "params": params}
        )
        assert r.status_code == 502 and r.json()["code"] == "openplatform.template_not_approved", r.text
        r = await client.post(
            f"{API}/admin/external-column-templates/{r_template_id(await office.get('/operator/templates'))}/approve",
            headers=admin,
            json={"note": "内容合规"},
        )
        assert r.status_code == 200, r.text
        r = await office.post(
            f"/operator/bills/{bill_id}/messages",
            json={
                "template": "tuition_refund",
                "params": params,
                "idempotency_key": "refund-msg-" + refund_no,
            },
        )
        assert r.status_code == 201 and r.json()["message"]["sent_now"] is True, r.text
        inbox = (await client.get(f"{API}/me/notifications", headers=resident)).json()["items"]
        mine = [n["text"] for n in inbox if "李明轩" in n["text"]]
        assert mine == [
            f"【我家亳州】{reg.name}：您为李明轩缴纳的2026年秋季学期学费已退回80.00元，将原路退回支付账户。"
        ]

        # Finance lists the payment under the column's name, the refund beside it.
        finance = await login(roles=["finance"])
        day = (await client.get(f"{API}/finance/external-columns/payments", headers=finance)).json()
        [listed] = [c for c in day["columns"] if c["column_id"] == reg.id]
        assert listed["column_name"] == reg.name and listed["paid_count"] == 1
        assert listed["paid_fen"] == FEE_FEN and listed["refunded_fen"] == REFUND_FEN
        assert (
            listed["orders"][0]["out_order_no"] == f"SF{bill_id}"
            and listed["orders"][0]["sub_account"] == "school-01"
        )

        # The admin disables the column: its next calls to the platform fail, and home no longer lists it.
        r = await client.post(f"{API}/admin/external-columns/{reg.id}/disable", headers=admin)
        assert r.status_code == 200 and r.json()["enabled"] is False
        await page.reload()
        assert "登录已失效" in await page.inner_text("#error")
        r = await office.post(
            f"/operator/bills/{bill_id}/refunds",
            json={"amount_fen": 100, "out_refund_no": "SR" + secrets.token_hex(6)},
        )
        assert r.status_code == 502 and r.json()["code"] == "openplatform.column_disabled", r.text
        r = await office.post(
            f"/operator/bills/{bill_id}/messages", json={"template": "tuition_refund", "params": params}
        )
        assert r.status_code == 502 and r.json()["code"] == "openplatform.client_unauthorized", r.text
        await page.goto(f"{public}/login")
        assert "该栏目已停用" in await page.inner_text("#error")
        home = (await client.get(f"{API}/home", headers=resident)).json()
        assert not [c for cat in home["categories"] for c in cat["columns"] if c.get("path") == f"{public}/"]
        async with session_scope() as s:
            notices = (await s.exec(select(CashierNotice).where(CashierNotice.column_id == reg.id))).all()
        # One payment, one refund: one notice each, each delivered.
        assert sorted(n.payload["event"] for n in notices) == ["order.paid", "refund.succeeded"]
        assert all(n.status == "delivered" for n in notices)


def r_template_id(listed: httpx.Response) -> str:
    [t] = [t for t in listed.json()["templates"] if t["key"] == "tuition_refund"]
    return str(t["id"])


async def test_consent_page_lets_the_form_return_to_the_column(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    admin = await login(roles=["admin"])
    public = "https://127.0.0.1:9443"
    reg = await register_column(client, admin, public, 9080)
    resident = await login()
    ticket = (await client.post(f"{API}/oidc/tickets", headers=resident)).json()["ticket"]
    verifier = secrets.token_urlsafe(48)
    page = await client.get(
        f"{API}/oidc/authorize",
        params={
            "response_type": "code",
            "client_id": reg.client_id,
            "redirect_uri": f"{public}/oidc/callback",
            "scope": "openid",
            "state": "s",
            "nonce": "n",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            "ticket": ticket,
        },
    )
    assert page.status_code == 200 and "同意并登录" in page.text
    policy = {
        d.strip().split(" ", 1)[0]: d.strip().split()[1:]
        for d in page.headers.get("content-security-policy", "").split(";")
        if d.strip()
    }
    # CSP3 form-action governs the redirects that follow a form submission (Chromium enforces it):
    # the column's own origin, and no other site, is a target besides the platform itself.
    assert policy["form-action"] == ["'self'", public], policy
    assert policy["default-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], policy
