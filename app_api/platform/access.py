"""Who may call an endpoint. Every route declares it through one of these dependencies.

``tests/app_api/test_access.py`` walks every route of the app and fails on one whose dependency
tree holds none of them. Each dependency carries ``__wojia_access__`` so that walk can find it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import Scope

from app_api.core.errors import Forbidden, Unauthorized
from app_api.core.settings import get_settings
from app_api.platform.accounts.errors import (
    AccountDisabled,
    ConsoleLoginRequired,
    CsrfInvalid,
    TokenExpired,
    TokenInvalid,
)
from app_api.platform.accounts.principal import Principal, load
from app_api.platform.accounts.tokens import AccessClaims, decode_access

_bearer = HTTPBearer(auto_error=False)

# Staff consoles in a browser: the access token in an HttpOnly cookie (sent to every /api/v1/ path),
# the refresh token in another one sent only to /api/v1/console/ (refresh and logout).
CONSOLE_COOKIE = "wojia_console"
CONSOLE_REFRESH_COOKIE = "wojia_console_refresh"
CSRF_FIELD = "csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_console_cookie = APIKeyCookie(name=CONSOLE_COOKIE, auto_error=False)


# Access tokens this worker verified: token -> (claims, expiry, the secret checked against). A
# resident's app sends the same token with every request for its lifetime; verifying it again
# (base64, JSON, HMAC, claim checks) was a tenth of the CPU of a cached read. A hit still honours
# the token's expiry, and a change of secret makes every entry miss.
_VERIFIED: dict[str, tuple[AccessClaims, float, str]] = {}
_VERIFIED_MAX = 4096


def _expiry(token: str) -> float:
    payload = token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def verify_access(token: str) -> AccessClaims:
    """``decode_access``, remembered until the token expires (TokenInvalid / TokenExpired as it)."""
    secret = get_settings().secret_key.get_secret_value()
    hit = _VERIFIED.get(token)
    if hit is not None and hit[2] is secret and time.time() < hit[1]:
        return hit[0]
    claims = decode_access(token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[token] = (claims, _expiry(token), secret)
    return claims


def _mark(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__wojia_access__ = kind  # type: ignore[attr-defined]
        return fn

    return deco


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an ``Authorization: Bearer`` header, as ``HTTPBearer(auto_error=False)``
    reads them: None when the header is missing, empty or of another scheme."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


async def principal_for(token: str | None) -> Principal | None:
    """The caller an access token names (None without a token); TokenInvalid, TokenExpired or
    AccountDisabled as every authenticated route answers them."""
    if token is None:
        return None
    claims = verify_access(token)
    principal, revoked = await load(None, claims.account_id, claims.family_id)
    if principal is None or revoked:
        raise TokenInvalid()
    if not principal.is_active:
        raise AccountDisabled()
    return principal


async def optional_principal(scope: Scope) -> Principal | None:
    """``optional_account`` for a handler that runs without FastAPI's dependency resolution (a
    plain ASGI handler, see ``app_api.wiring.route_index``): the same checks and errors, and the
    principal kept in the request state as the dependency keeps it."""
    authorization = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    principal = await principal_for(bearer_token(authorization))
    if principal is not None:
        scope.setdefault("state", {})["principal"] = principal
    return principal


async def _principal_from(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal | None:
    principal = await principal_for(creds.credentials if creds is not None else None)
    if principal is not None:
        request.state.principal = principal
    return principal


@_mark("authenticated")
async def current_account(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    p = await _principal_from(request, creds)
    if p is None:
        raise Unauthorized()
    return p


@_mark("optional")
async def optional_account(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal | None:
    return await _principal_from(request, creds)


@_mark("public")
async def public() -> None:
    """Anyone may call: health checks, and webhooks that verify their own signatures."""


CurrentAccount = Annotated[Principal, Depends(current_account)]
OptionalAccount = Annotated[Principal | None, Depends(optional_account)]


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    @_mark("roles:" + ",".join(roles))
    async def dep(principal: CurrentAccount) -> Principal:
        if not principal.has(*roles):
            raise Forbidden(f"此操作仅限以下角色：{'、'.join(ROLE_NAMES.get(r, r) for r in roles)}")
        return principal

    return dep


def console_csrf(family_id: str) -> str:
    """The CSRF value of a console login: bound to its token family, so it dies with a logout."""
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"console-csrf:{family_id}".encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: Request, family_id: str) -> None:
    """Refuse a form POST whose ``csrf`` field does not match the login's (cookies alone prove nothing)."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = console_csrf(family_id)
    if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfInvalid()


async def _console_principal(
    request: Request, creds: HTTPAuthorizationCredentials | None, cookie: str | None
) -> Principal:
    claims: AccessClaims
    if creds is not None:
        # API clients: the bearer header is not sent by browsers on their own, so no CSRF check.
        claims = verify_access(creds.credentials)
    elif cookie:
        try:
            claims = verify_access(cookie)
        except (TokenInvalid, TokenExpired) as e:
            raise ConsoleLoginRequired() from e
    else:
        raise ConsoleLoginRequired()
    principal, revoked = await load(None, claims.account_id, claims.family_id)
    if principal is None or revoked:
        raise TokenInvalid() if creds is not None else ConsoleLoginRequired()
    if not principal.is_active:
        raise AccountDisabled()
    if creds is None and request.method not in _SAFE_METHODS:
        await check_csrf(request, claims.family_id)
    request.state.principal = principal
    request.state.csrf = console_csrf(claims.family_id)
    return principal


def require_console_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """Staff console pages: the bearer header (API clients) or the console cookie (browsers).

    With the cookie, a missing, expired or revoked login raises ``ConsoleLoginRequired`` (GET and
    HEAD are redirected to ``/api/v1/console/refresh``), and other methods need the ``csrf`` form
    field; templates find it on ``request.state.csrf``.
    """
    if not roles:
        raise ValueError("require_console_roles needs at least one role")

    @_mark("roles:" + ",".join(roles))
    async def dep(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        cookie: Annotated[str | None, Depends(_console_cookie)],
    ) -> Principal:
        principal = await _console_principal(request, creds, cookie)
        if not principal.has(*roles):
            raise Forbidden(f"此操作仅限以下角色：{'、'.join(ROLE_NAMES.get(r, r) for r in roles)}")
        return principal

    return dep


ROLE_NAMES = {
    "resident": "居民",
    "agent": "代办员",
    "reviewer": "审核人员",
    "finance": "财务人员",
    "bank_officer": "金融机构人员",
    "admin": "管理员",
}

Resident = Annotated[Principal, Depends(require_roles("resident"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Finance = Annotated[Principal, Depends(require_roles("finance"))]
FinanceConsole = Annotated[Principal, Depends(require_console_roles("finance"))]
