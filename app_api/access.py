"""Who may call an endpoint. Every route declares it through one of these dependencies.

``tests/app_api/test_access.py`` walks every route of the app and fails on one whose dependency
tree holds none of them. Each dependency carries ``__wojia_access__`` so that walk can find it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app_api.accounts.errors import AccountDisabled, TokenInvalid
from app_api.accounts.principal import Principal, load
from app_api.accounts.tokens import decode_access
from app_api.errors import Forbidden, IdentityLevelRequired, Unauthorized

_bearer = HTTPBearer(auto_error=False)


def _mark(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__wojia_access__ = kind  # type: ignore[attr-defined]
        return fn

    return deco


async def _principal_from(request: Request, creds: HTTPAuthorizationCredentials | None) -> Principal | None:
    if creds is None:
        return None
    claims = decode_access(creds.credentials)
    principal, revoked = await load(None, claims.account_id, claims.family_id)
    if principal is None or revoked:
        raise TokenInvalid()
    if not principal.is_active:
        raise AccountDisabled()
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


def require_level(level: int) -> Callable[..., Awaitable[Principal]]:
    @_mark(f"level:{level}")
    async def dep(principal: CurrentAccount) -> Principal:
        if principal.identity_level < level:
            raise IdentityLevelRequired(level, principal.identity_level)
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
