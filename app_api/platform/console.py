"""Browser sessions for the staff consoles (finance today; reviewers and admins reuse it).

Browsers do not send an ``Authorization`` header on their own, so a console login keeps its tokens
in two HttpOnly, SameSite=Strict cookies: the access token (``wojia_console``, sent to every
``/api/v1/`` path) and the refresh token (``wojia_console_refresh``, sent only to
``/api/v1/console/``: refresh and logout). Pages declare access with
:func:`app_api.platform.access.require_console_roles`, which also checks the ``csrf`` form field of POSTs.

- ``GET /console/login``: the login form (phone, SMS code, password);
- ``POST /console/login``: ``action=send`` sends the code, ``action=login`` logs a staff member in;
- ``GET /console/refresh``: rotates the refresh cookie and goes back to ``next`` (else to login).
  Tabs share the cookies, so two tabs may refresh with one token: a token spent by another tab
  in the last ``REFRESH_RACE_GRACE_S`` seconds gets a page that returns to ``next`` a second later
  (with the other tab's cookies) instead of revoking the login, as a replay after that does;
- ``POST /console/logout``: revokes the login and clears the cookies.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app_api.core.component import Component, Mount
from app_api.core.db import SessionDep, savepoint
from app_api.core.errors import AppError, BadRequest
from app_api.core.settings import get_settings
from app_api.core.templates import LazyTemplate
from app_api.platform.access import (
    CONSOLE_COOKIE,
    CONSOLE_REFRESH_COOKIE,
    CSRF_FIELD,
    ROLE_NAMES,
    check_csrf,
    console_csrf,
    public,
)
from app_api.platform.accounts import errors, service
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal, load
from app_api.platform.accounts.tokens import (
    AccessClaims,
    TokenPair,
    decode_access,
    log_out,
    refresh_owner,
    rotate,
)

API = "/api/v1"
CONSOLE = f"{API}/console"
LOGIN_PATH = f"{CONSOLE}/login"
REFRESH_PATH = f"{CONSOLE}/refresh"
LOGOUT_PATH = f"{CONSOLE}/logout"
ACCESS_COOKIE_PATH = f"{API}/"
REFRESH_COOKIE_PATH = f"{CONSOLE}/"

_PHONE = re.compile(r"1[3-9][0-9]{9}")
_CODE = re.compile(r"[0-9]{6}")

router = APIRouter(prefix="/console", tags=["console"])


def safe_next(value: str | None) -> str:
    """A local ``/api/v1/`` path to go to after login, else the login page (no open redirects)."""
    if not value or len(value) > 2000 or not value.startswith(f"{API}/"):
        return LOGIN_PATH
    if any(c == "\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return LOGIN_PATH
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or ".." in parts.path.split("/"):
        return LOGIN_PATH
    return value


def login_url(next_path: str | None = None) -> str:
    if not next_path or next_path == LOGIN_PATH:
        return LOGIN_PATH
    return f"{LOGIN_PATH}?{urlencode({'next': next_path})}"


def refresh_url(next_path: str) -> str:
    return f"{REFRESH_PATH}?{urlencode({'next': next_path})}"


# -- cookies ------------------------------------------------------------------------------------


def _set_cookies(response: Response, pair: TokenPair) -> None:
    s = get_settings()
    common: dict[str, Any] = {"secure": not s.is_dev, "httponly": True, "samesite": "strict"}
    response.set_cookie(
        CONSOLE_COOKIE, pair.access_token, max_age=s.access_token_ttl_s, path=ACCESS_COOKIE_PATH, **common
    )
    response.set_cookie(
        CONSOLE_REFRESH_COOKIE,
        pair.refresh_token,
        max_age=s.refresh_token_ttl_s,
        path=REFRESH_COOKIE_PATH,
        **common,
    )


def _clear_cookies(response: Response) -> None:
    common: dict[str, Any] = {"secure": not get_settings().is_dev, "httponly": True, "samesite": "strict"}
    response.delete_cookie(CONSOLE_COOKIE, path=ACCESS_COOKIE_PATH, **common)
    response.delete_cookie(CONSOLE_REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, **common)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})


# -- the page -----------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>工作人员登录 · 我家{{ city }}</title>
<style>
body { font-family: "PingFang SC", "Noto Sans CJK SC", sans-serif; margin: 2rem auto; max-width: 26rem;
       padding: 0 1rem; color: #222; }
label { display: block; margin-top: 1rem; }
input { display: block; width: 100%; box-sizing: border-box; padding: .5rem; font-size: 16px; }
button { margin-top: 1rem; padding: .5rem 1rem; font-size: 16px; }
.error { color: #b00; } .notice { color: #060; }
</style>
</head>
<body>
<main>
<h1>我家{{ city }} · 工作人员登录</h1>
{% if error %}<div id="message" class="error" role="alert"><p>{{ error.title }}</p>
{% if error.detail != error.title %}<p>{{ error.detail }}</p>{% endif %}</div>{% endif %}
{% if notice %}<p id="message" class="notice" role="status">{{ notice }}</p>{% endif %}
{% if principal %}
<p id="signed-in">已登录（{{ roles }}）。
{% if next != login_path %}<a href="{{ next }}">继续</a>{% endif %}</p>
<form method="post" action="{{ logout_path }}">
  <input type="hidden" name="{{ csrf_field }}" value="{{ csrf }}">
  <button type="submit">退出登录</button>
</form>
{% else %}
<form id="login" method="post" action="{{ login_path }}">
  {# Enter in any field logs in: the first submit button of a form is its default. #}
  <button type="submit" name="action" value="login" hidden tabindex="-1" aria-hidden="true"></button>
  <input type="hidden" name="next" value="{{ next }}">
  <label for="phone">手机号</label>
  <input id="phone" name="phone" type="tel" inputmode="numeric" autocomplete="username"
         maxlength="11" value="{{ phone }}" required>
  <button type="submit" name="action" value="send">发送验证码</button>
  <label for="code">短信验证码</label>
  <input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="6">
  <label for="password">密码</label>
  <input id="password" name="password" type="password" autocomplete="current-password" maxlength="200">
  <button type="submit" name="action" value="login">登录</button>
</form>
{% endif %}
</main>
</body>
</html>
"""
_page_template = LazyTemplate(_PAGE)

# Another tab of the same browser refreshed a moment ago: wait for its cookies, then go on.
_RETRY = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="1;url={{ next }}">
<title>正在更新登录状态</title>
</head>
<body>
<p id="message" role="status">登录状态已在其他页面更新，正在返回…… <a href="{{ next }}">立即返回</a></p>
</body>
</html>
"""
_retry_template = LazyTemplate(_RETRY)
# Seconds during which a just-spent refresh cookie means "another tab", not "a stolen copy".
REFRESH_RACE_GRACE_S = 20


def _page(
    *,
    next_path: str,
    status_code: int = 200,
    phone: str = "",
    error: AppError | None = None,
    notice: str | None = None,
    principal: Principal | None = None,
    csrf: str = "",
) -> HTMLResponse:
    html = _page_template.render(
        city=get_settings().city_name,
        next=next_path,
        phone=phone,
        error=error,
        notice=notice,
        principal=principal,
        roles="、".join(ROLE_NAMES.get(r, r) for r in principal.roles) if principal else "",
        csrf=csrf,
        csrf_field=CSRF_FIELD,
        login_path=LOGIN_PATH,
        logout_path=LOGOUT_PATH,
    )
    # The login page must not be cached nor framed (clickjacking of the password field).
    return HTMLResponse(
        html, status_code=status_code, headers={"cache-control": "no-store", "x-frame-options": "DENY"}
    )


async def _signed_in(request: Request) -> tuple[Principal, AccessClaims] | None:
    cookie = request.cookies.get(CONSOLE_COOKIE)
    if not cookie:
        return None
    try:
        claims = decode_access(cookie)
    except AppError:
        return None
    principal, revoked = await load(None, claims.account_id, claims.family_id)
    if principal is None or revoked or not principal.is_active:
        return None
    return principal, claims


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


# -- endpoints ----------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse, dependencies=[Depends(public)])
async def login_page(
    request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
) -> HTMLResponse:
    """The staff login page; with a valid console cookie it says so and offers to log out."""
    target = safe_next(next_path)
    current = await _signed_in(request)
    if current is not None:
        principal, claims = current
        return _page(next_path=target, principal=principal, csrf=console_csrf(claims.family_id))
    return _page(next_path=target)


def _not_staff() -> errors.ConsoleStaffOnly:
    city = get_settings().city_name
    return errors.ConsoleStaffOnly(f"该手机号不是工作人员账号，居民请在「我家{city}」App 或小程序中登录")


async def _login_staff(session: SessionDep, *, phone: str, password: str, code: str) -> TokenPair:
    try:
        # A refusal after login_staff issued tokens must leave nothing behind (tokens, audit entry).
        async with savepoint(session):
            pair = await service.login_staff(session, phone=phone, password=password, code=code)
            account = await session.get(Account, decode_access(pair.access_token).account_id)
            if account is None or not account.is_staff:
                raise _not_staff()
    except errors.BadCredentials:
        # login_staff checks the SMS code before refusing: whoever gets here holds the phone, so
        # telling them it is not a staff account discloses nothing to a stranger.
        account = await service.find_by_phone(session, phone)
        if account is None or not account.is_staff:
            raise _not_staff() from None
        raise
    return pair


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(public)])
async def login_submit(
    request: Request,
    session: SessionDep,
    action: Annotated[str, Form()] = "",
    phone: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
    next_path: Annotated[str, Form(alias="next")] = "",
) -> Response:
    """The login form: ``action=send`` sends an SMS code, ``action=login`` logs in and sets the cookies."""
    target = safe_next(next_path)
    phone = phone.strip()
    try:
        if not _PHONE.fullmatch(phone):
            raise errors.InvalidPhone("请输入11位手机号码")
        if action == "send":
            await service.send_login_code(phone=phone, client_ip=_client_ip(request))
            return _page(next_path=target, phone=phone, notice="验证码已发送")
        if action != "login":
            raise BadRequest("请选择发送验证码或登录")
        code = code.strip()
        if not _CODE.fullmatch(code):
            raise errors.CodeInvalid("请输入短信中的6位数字验证码")
        if not password or len(password) > 200:
            raise errors.BadCredentials("请输入密码")
        pair = await _login_staff(session, phone=phone, password=password, code=code)
    except AppError as e:
        return _page(next_path=target, phone=phone, error=e, status_code=e.status)
    response = _redirect(target)
    _set_cookies(response, pair)
    return response


@router.get("/refresh", name="console_refresh", dependencies=[Depends(public)])
async def refresh(
    request: Request, session: SessionDep, next_path: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """Rotate the refresh cookie and go back to ``next``; without a usable one, to the login page."""
    target = safe_next(next_path)
    raw = request.cookies.get(CONSOLE_REFRESH_COOKIE)
    if raw:
        try:
            # A spent token presented again revokes its whole family (committed inside rotate),
            # unless it was spent within the grace by another tab sharing these cookies.
            pair, _ = await rotate(session, raw, race_grace_s=REFRESH_RACE_GRACE_S)
        except errors.RefreshRaced:
            # Keep the cookies: the other tab's response sets the new pair in this same browser.
            return HTMLResponse(_retry_template.render(next=target), headers={"cache-control": "no-store"})
        except AppError:
            pass
        else:
            response = _redirect(target)
            _set_cookies(response, pair)
            return response
    response = _redirect(login_url(target))
    _clear_cookies(response)
    return response


@router.post("/logout", name="console_logout", dependencies=[Depends(public)])
async def logout(request: Request, session: SessionDep) -> Response:
    """Revoke this console login (refresh and access tokens), clear the cookies, back to the login page.

    Declared public because it verifies the caller itself: the access cookie (an expired one still
    names its login) or else the refresh cookie, plus the ``csrf`` field bound to that login.
    """
    claims: AccessClaims | None = None
    cookie = request.cookies.get(CONSOLE_COOKIE)
    if cookie:
        try:
            claims = decode_access(cookie, allow_expired=True)
        except AppError:
            claims = None
    raw = request.cookies.get(CONSOLE_REFRESH_COOKIE)
    if claims is None and raw:
        claims = await refresh_owner(session, raw)
    if claims is not None:
        await check_csrf(request, claims.family_id)
        await log_out(session, claims)
    response = _redirect(LOGIN_PATH)
    _clear_cookies(response)
    return response


def _component() -> Component:
    # The staff workbench's own pages (its home) ride on the console's component: same login.
    from app_api.platform.workbench import router as workbench_router

    return Component(name="app_api.platform.console", routers=(Mount(router), Mount(workbench_router)))


component = _component()
