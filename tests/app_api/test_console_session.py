"""Browser sessions of the staff consoles: the login form, the cookies, refresh, CSRF and logout.

A small cookie-following client stands in for the browser: it keeps the cookies the app sets
(honouring Path and Max-Age), sends them back itself, and never sends an Authorization header.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlmodel import col, func, select

from app_api.core.db import session_scope
from app_api.platform.accounts.models import RefreshToken
from app_api.platform.audit.models import AuditEvent
from app_api.platform.console import safe_next
from payments.models import ReconciliationItem, ReconciliationRun
from tests.conftest import LoginFn, new_phone, sms_code

CONSOLE = "/api/v1/payments/finance/console"
LOGIN = "/api/v1/console/login"


@dataclass
class Browser:
    """Cookies as a browser keeps them: by name, with their path; removed when Max-Age is 0."""

    http: httpx.AsyncClient
    jar: dict[str, tuple[str, str]] = field(default_factory=dict)
    last_set: dict[str, Any] = field(default_factory=dict)

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        path = urlsplit(url).path
        headers = dict(kw.pop("headers", {}))
        cookie = "; ".join(f"{n}={v}" for n, (v, p) in self.jar.items() if path.startswith(p))
        if cookie:
            headers["cookie"] = cookie
        r = await self.http.request(method, url, headers=headers, **kw)
        self.http.cookies.clear()  # this client follows cookies itself
        self.last_set = {}
        for raw in r.headers.get_list("set-cookie"):
            parsed: SimpleCookie = SimpleCookie()
            parsed.load(raw)
            for name, morsel in parsed.items():
                self.last_set[name] = morsel
                if morsel["max-age"] in ("0", "-1"):
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = (morsel.value, morsel["path"] or "/")
        return r

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def follow(self, r: httpx.Response, limit: int = 5) -> tuple[httpx.Response, list[str]]:
        """Follow 303s like a browser; returns the last response and the locations visited."""
        seen = []
        while r.status_code in (302, 303) and limit:
            seen.append(r.headers["location"])
            r = await self.get(r.headers["location"])
            limit -= 1
        return r, seen


@pytest.fixture
async def browser(app: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield Browser(c)


async def make_staff(roles: list[str], phone: str | None = None) -> tuple[str, str, str]:
    """A staff account with a known password: (phone, password, account id)."""
    from app_api.platform.accounts.service import create_staff

    phone = phone or new_phone()
    password = "Pw-" + secrets.token_hex(6)
    async with session_scope() as s:
        account = await create_staff(s, phone=phone, password=password, roles=roles)
    return phone, password, account.id


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, html
    return m.group(1)


def message_of(html: str) -> str:
    m = re.search(r'<(div|p) id="message"[^>]*>(.*?)</\1>', html, re.S)
    return re.sub(r"<[^>]+>", " ", m.group(2)) if m else ""


async def send_code(browser: Browser, client: httpx.AsyncClient, phone: str, next_path: str = CONSOLE) -> str:
    r = await browser.post(LOGIN, data={"action": "send", "phone": phone, "next": next_path})
    assert r.status_code == 200, r.text
    assert "验证码已发送" in message_of(r.text)
    return await sms_code(client, phone)


async def console_login(
    browser: Browser, client: httpx.AsyncClient, phone: str, password: str, next_path: str = CONSOLE
) -> httpx.Response:
    code = await send_code(browser, client, phone, next_path)
    return await browser.post(
        LOGIN,
        data={"action": "login", "phone": phone, "password": password, "code": code, "next": next_path},
    )


async def refresh_rows(account_id: str) -> int:
    async with session_scope() as s:
        return int(
            (
                await s.exec(
                    select(func.count())
                    .select_from(RefreshToken)
                    .where(RefreshToken.account_id == account_id)
                )
            ).one()
        )


async def test_login_page_is_a_labelled_form(browser: Browser) -> None:
    r = await browser.get(LOGIN, params={"next": CONSOLE})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store" and r.headers["x-frame-options"] == "DENY"
    for field_id, label in (("phone", "手机号"), ("code", "短信验证码"), ("password", "密码")):
        assert f'<label for="{field_id}">{label}</label>' in r.text and f'id="{field_id}"' in r.text
    assert ">发送验证码</button>" in r.text and ">登录</button>" in r.text
    assert f'name="next" value="{CONSOLE}"' in r.text


async def test_finance_logs_in_through_the_form_and_gets_the_console(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    phone, password, _ = await make_staff(["finance"])
    r = await console_login(browser, client, phone, password)
    assert r.status_code == 303 and r.headers["location"] == CONSOLE
    access, refresh = browser.last_set["wojia_console"], browser.last_set["wojia_console_refresh"]
    assert access["httponly"] and access["samesite"].lower() == "strict" and access["path"] == "/api/v1/"
    assert access["max-age"] == "900" and not access["secure"]  # Secure outside development/test
    assert refresh["httponly"] and refresh["samesite"].lower() == "strict"
    assert refresh["path"] == "/api/v1/console/" and refresh["max-age"] == str(30 * 24 * 3600)

    page, _ = await browser.follow(r)
    assert page.status_code == 200 and "财务对账控制台" in page.text
    assert "退出登录" in page.text and 'action="/api/v1/console/logout"' in page.text
    # Every POST form of the page carries the CSRF field.
    assert page.text.count("<form ") == page.text.count('name="csrf"') == 2

    # The login page now says so.
    again = await browser.get(LOGIN)
    assert 'id="signed-in"' in again.text and "财务人员" in again.text


async def test_resident_account_is_refused_and_nothing_is_written(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    from app_api.platform.accounts.service import get_or_create_resident

    phone = new_phone()
    async with session_scope() as s:  # a resident, as the app registers one
        await get_or_create_resident(s, phone=phone)
    r = await console_login(browser, client, phone, "whatever-password")
    assert r.status_code == 403
    assert "此入口仅限工作人员登录" in message_of(r.text) and "居民" in message_of(r.text)
    assert browser.jar == {} and browser.last_set == {}
    assert f'value="{phone}"' in r.text  # the phone is kept, the password is not echoed

    # Even an account with a password but only the resident role: refused, and the tokens and
    # audit entry login_staff wrote are rolled back.
    phone2, password2, account_id = await make_staff(["resident"])
    async with session_scope() as s:
        before = (await s.exec(select(func.count()).select_from(AuditEvent))).one()
    r = await console_login(browser, client, phone2, password2)
    assert r.status_code == 403 and "此入口仅限工作人员登录" in message_of(r.text)
    assert browser.jar == {}
    assert await refresh_rows(account_id) == 0
    async with session_scope() as s:
        logins = (
            await s.exec(
                select(AuditEvent).where(AuditEvent.actor_id == account_id, AuditEvent.action == "auth.login")
            )
        ).all()
        after = (await s.exec(select(func.count()).select_from(AuditEvent))).one()
    assert logins == [] and after == before


async def test_wrong_password_or_code_rerenders_with_the_error_and_sets_no_cookie(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    phone, password, account_id = await make_staff(["finance"])
    r = await console_login(browser, client, phone, "not-" + password)
    assert r.status_code == 401 and "账号或密码错误" in message_of(r.text)
    assert browser.jar == {} and r.headers.get("set-cookie") is None

    phone, password, account_id2 = await make_staff(["finance"])  # a new phone: no resend cooldown
    code = await send_code(browser, client, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = await browser.post(
        LOGIN, data={"action": "login", "phone": phone, "password": password, "code": wrong}
    )
    assert r.status_code == 400 and "验证码错误或已失效" in message_of(r.text)
    assert "还可尝试" in message_of(r.text) and browser.jar == {}

    r = await browser.post(
        LOGIN, data={"action": "login", "phone": "12345", "password": password, "code": "1"}
    )
    assert r.status_code == 422 and "手机号码格式不正确" in message_of(r.text) and browser.jar == {}
    assert await refresh_rows(account_id) == 0 and await refresh_rows(account_id2) == 0


async def _item() -> tuple[str, str]:
    async with session_scope() as s:
        run = ReconciliationRun(
            provider="wechat_v2", bill_date=dt.date(2022, 1, 1), status="done", stage="done", totals={}
        )
        s.add(run)
        await s.flush()
        item = ReconciliationItem(
            run_id=run.id, category="missing_at_provider", out_trade_no="CSRF" + secrets.token_hex(4)
        )
        s.add(item)
        await s.flush()
        return run.id, item.id


async def _resolved(item_id: str) -> bool:
    async with session_scope() as s:
        item = await s.get(ReconciliationItem, item_id)
        assert item is not None
        return item.resolved_at is not None


async def test_form_post_needs_the_csrf_field(browser: Browser, client: httpx.AsyncClient) -> None:
    phone, password, _ = await make_staff(["finance"])
    await browser.follow(await console_login(browser, client, phone, password))
    run_id, item_id = await _item()
    page = await browser.get(f"{CONSOLE}/runs/{run_id}")
    assert page.status_code == 200 and item_id in page.text
    csrf = csrf_of(page.text)
    url = f"{CONSOLE}/items/{item_id}/resolve"

    for data in ({"note": "已核实"}, {"note": "已核实", "csrf": "0" * 64}, {"note": "已核实", "csrf": "甲"}):
        r = await browser.post(url, data=data)
        assert r.status_code == 403 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "auth.csrf_invalid" and r.json()["title"] == "页面已过期，请刷新后重试"
        assert not await _resolved(item_id)
    runs_before = await _count_runs()
    r = await browser.post(f"{CONSOLE}/runs", data={"provider": "wechat_v2", "bill_date": "2022-01-02"})
    assert r.status_code == 403 and await _count_runs() == runs_before

    r = await browser.post(url, data={"note": "已核实", "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == f"{CONSOLE}/runs/{run_id}"
    assert await _resolved(item_id)


async def _count_runs() -> int:
    async with session_scope() as s:
        return int((await s.exec(select(func.count()).select_from(ReconciliationRun))).one())


async def logged_in_with_expired_access(
    browser: Browser, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """A finance officer logged in through the form whose access cookie has since expired."""
    from app_api.core.settings import get_settings
    from app_api.platform.accounts.tokens import decode_access, make_access

    phone, password, account_id = await make_staff(["finance"])
    await browser.follow(await console_login(browser, client, phone, password))
    claims = decode_access(browser.jar["wojia_console"][0])
    with monkeypatch.context() as m:
        m.setattr(get_settings(), "access_token_ttl_s", -60)
        expired = make_access(claims.account_id, claims.family_id)
    browser.jar["wojia_console"] = (expired, "/api/v1/")
    return expired, account_id


async def test_expired_access_cookie_goes_through_refresh_and_back(
    browser: Browser, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    expired, _ = await logged_in_with_expired_access(browser, client, monkeypatch)
    old_refresh = browser.jar["wojia_console_refresh"][0]

    # A form post with the expired cookie is refused (it cannot be replayed after a redirect).
    r = await browser.post(f"{CONSOLE}/runs", data={"provider": "wechat_v2", "bill_date": "2022-01-03"})
    assert r.status_code == 401 and r.json()["code"] == "auth.console_login_required"

    r = await browser.get(f"{CONSOLE}?x=1")
    assert r.status_code == 303
    loc = urlsplit(r.headers["location"])
    assert loc.path == "/api/v1/console/refresh" and parse_qs(loc.query)["next"] == [f"{CONSOLE}?x=1"]
    r = await browser.get(r.headers["location"])
    assert r.status_code == 303 and r.headers["location"] == f"{CONSOLE}?x=1"
    assert (
        browser.jar["wojia_console"][0] != expired and browser.jar["wojia_console_refresh"][0] != old_refresh
    )
    page = await browser.get(r.headers["location"])
    assert page.status_code == 200 and "财务对账控制台" in page.text

    # The spent refresh token presented again later (a stolen copy): the whole login is revoked.
    await age_spent_refresh(old_refresh)
    fresh = dict(browser.jar)
    browser.jar["wojia_console_refresh"] = (old_refresh, "/api/v1/console/")
    r = await browser.get("/api/v1/console/refresh", params={"next": CONSOLE})
    assert r.status_code == 303 and r.headers["location"].startswith(LOGIN + "?next=")
    assert "wojia_console" not in browser.jar
    browser.jar = fresh
    r = await browser.get(CONSOLE)
    assert r.status_code == 303 and r.headers["location"].startswith("/api/v1/console/refresh")
    r, seen = await browser.follow(r)
    assert seen[-1].startswith(LOGIN) and 'id="login"' in r.text


async def age_spent_refresh(raw: str, seconds: int = 60) -> None:
    """Move a spent refresh token's use back in time, past the console's two-tab grace."""
    import sqlalchemy as sa

    from app_api.platform.accounts.tokens import _hash

    async with session_scope() as s:
        token = (await s.exec(select(RefreshToken).where(RefreshToken.token_hash == _hash(raw)))).one()
        assert token.used_at is not None
        await s.exec(
            sa.update(RefreshToken)
            .where(col(RefreshToken.id) == token.id)
            .values(used_at=token.used_at - dt.timedelta(seconds=seconds))
        )


async def test_two_tabs_refreshing_together_stay_logged_in(
    browser: Browser, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs list in one tab, a run in another: both access cookies expired, both tabs refresh."""
    _, account_id = await logged_in_with_expired_access(browser, client, monkeypatch)
    stale = dict(browser.jar)  # what the second tab sends: the cookies before the first refresh

    first = await browser.get("/api/v1/console/refresh", params={"next": f"{CONSOLE}/runs"})
    assert first.status_code == 303 and first.headers["location"] == f"{CONSOLE}/runs"
    winner = dict(browser.jar)

    browser.jar = dict(stale)
    second = await browser.get("/api/v1/console/refresh", params={"next": CONSOLE})
    # The second tab is asked to come back in a moment, and its cookies are left alone.
    assert second.status_code == 200 and "登录状态已在其他页面更新" in second.text
    assert f'content="1;url={CONSOLE}"' in second.text and not browser.last_set
    # By then the browser holds the first tab's cookies: both tabs carry on, nobody is logged out.
    browser.jar = winner
    page = await browser.get(CONSOLE)
    assert page.status_code == 200 and "财务对账控制台" in page.text
    again = await browser.get("/api/v1/console/refresh", params={"next": CONSOLE})
    assert again.status_code == 303 and again.headers["location"] == CONSOLE
    async with session_scope() as s:
        revoked = (
            await s.exec(
                select(func.count())
                .select_from(RefreshToken)
                .where(RefreshToken.account_id == account_id, col(RefreshToken.revoked_at).is_not(None))
            )
        ).one()
        reused = (
            await s.exec(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.actor_id == account_id, AuditEvent.action == "auth.refresh_reused")
            )
        ).one()
    assert revoked == 0 and reused == 0


async def test_no_cookie_at_all_ends_on_the_login_page_with_next(browser: Browser) -> None:
    r, seen = await browser.follow(await browser.get(f"{CONSOLE}/runs/abc"))
    assert seen[0].startswith("/api/v1/console/refresh?") and seen[-1].startswith(LOGIN)
    assert r.status_code == 200 and f'name="next" value="{CONSOLE}/runs/abc"' in r.text
    # API clients without a bearer header on a non-GET get a problem document.
    r = await browser.post(f"{CONSOLE}/runs", data={})
    assert r.status_code == 401 and r.json()["code"] == "auth.console_login_required"


async def test_logout_revokes_the_login(browser: Browser, client: httpx.AsyncClient) -> None:
    phone, password, account_id = await make_staff(["finance"])
    page, _ = await browser.follow(await console_login(browser, client, phone, password))
    csrf = csrf_of(page.text)
    old = dict(browser.jar)

    r = await browser.post("/api/v1/console/logout", data={})
    assert r.status_code == 403 and r.json()["code"] == "auth.csrf_invalid"
    assert (await browser.get(CONSOLE)).status_code == 200  # still logged in

    r = await browser.post("/api/v1/console/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert browser.jar == {}
    assert browser.last_set["wojia_console"]["path"] == "/api/v1/"
    assert browser.last_set["wojia_console_refresh"]["path"] == "/api/v1/console/"
    async with session_scope() as s:
        events = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.actor_id == account_id, AuditEvent.action == "auth.logout"
                )
            )
        ).all()
        live = (
            await s.exec(
                select(func.count())
                .select_from(RefreshToken)
                .where(RefreshToken.account_id == account_id, col(RefreshToken.revoked_at).is_(None))
            )
        ).one()
    assert len(events) == 1 and live == 0

    # Someone who kept the old cookies gets nothing: not the page, not a refresh.
    browser.jar = old
    r = await browser.get(CONSOLE)
    assert r.status_code == 303
    r, seen = await browser.follow(r)
    assert seen[-1].startswith(LOGIN) and 'id="login"' in r.text and "财务对账控制台" not in r.text


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/api/v1/",
        "https://evil.example/api/v1/x",
        "/\\evil.example",
        "/api/v1/../../x",
        "/other",
        "/api/v1/x\r\nSet-Cookie: a=b",
        "",
    ],
)
def test_next_must_be_a_local_api_path(target: str) -> None:
    assert safe_next(target) == LOGIN


def test_next_keeps_a_local_api_path() -> None:
    assert safe_next(f"{CONSOLE}/runs/ab?x=1") == f"{CONSOLE}/runs/ab?x=1"


async def test_next_to_another_host_is_not_followed(browser: Browser, client: httpx.AsyncClient) -> None:
    phone, password, _ = await make_staff(["finance"])
    r = await console_login(browser, client, phone, password, next_path="//evil.example")
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    page = await browser.get(r.headers["location"])
    assert 'id="signed-in"' in page.text
    r = await browser.get("/api/v1/console/refresh", params={"next": "https://evil.example/"})
    assert r.status_code == 303 and r.headers["location"] == LOGIN


async def test_staff_without_the_finance_role_gets_403(browser: Browser, client: httpx.AsyncClient) -> None:
    phone, password, _ = await make_staff(["reviewer"])
    r = await console_login(browser, client, phone, password)
    assert r.status_code == 303 and "wojia_console" in browser.jar
    r = await browser.get(CONSOLE)
    assert r.status_code == 403 and r.json()["code"] == "auth.forbidden" and "财务人员" in r.json()["detail"]


async def test_bearer_clients_still_use_the_console_routes(client: httpx.AsyncClient, login: LoginFn) -> None:
    finance = await login(roles=["finance"])
    assert (await client.get(CONSOLE, headers=finance)).status_code == 200
    _, item_id = await _item()
    # No CSRF field with the bearer header: browsers never send it on their own.
    r = await client.post(f"{CONSOLE}/items/{item_id}/resolve", data={"note": "接口处理"}, headers=finance)
    assert r.status_code == 303 and await _resolved(item_id)
