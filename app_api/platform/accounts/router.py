from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from app_api.core.crypto import mask_name, mask_phone
from app_api.core.db import SessionDep
from app_api.core.errors import NotFound
from app_api.platform.access import CurrentAccount, public
from app_api.platform.accounts import closure, export, service
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import invalidate
from app_api.platform.accounts.schemas import (
    ClosureRequest,
    LoginRequest,
    MeOut,
    MeUpdate,
    RefreshRequest,
    SmsCodeRequest,
    SmsCodeSent,
    StaffLoginRequest,
    TokenOut,
)
from app_api.platform.accounts.tokens import TokenPair, rotate

router = APIRouter(tags=["auth"])


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _out(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token, refresh_token=pair.refresh_token, expires_in=pair.expires_in
    )


@router.post("/auth/sms-codes", dependencies=[Depends(public)], status_code=202)
async def send_code(body: SmsCodeRequest, request: Request) -> SmsCodeSent:
    """Send a 6-digit login code by SMS."""
    ttl, cooldown = await service.send_login_code(phone=body.phone, client_ip=_client_ip(request))
    return SmsCodeSent(expires_in=ttl, resend_after=cooldown)


@router.post("/auth/login", dependencies=[Depends(public)])
async def login(body: LoginRequest, session: SessionDep) -> TokenOut:
    """Log in (and on first login, register) a resident with a phone number and SMS code."""
    return _out(await service.login_resident(session, phone=body.phone, code=body.code))


@router.post("/auth/staff/login", dependencies=[Depends(public)])
async def staff_login(body: StaffLoginRequest, session: SessionDep) -> TokenOut:
    """Log in a staff account with password plus SMS code."""
    return _out(await service.login_staff(session, phone=body.phone, password=body.password, code=body.code))


@router.post("/auth/refresh", dependencies=[Depends(public)])
async def refresh(body: RefreshRequest, session: SessionDep) -> TokenOut:
    """Rotate a refresh token; presenting a spent one revokes its whole family."""
    pair, _ = await rotate(session, body.refresh_token)
    return _out(pair)


@router.post("/auth/logout", status_code=204)
async def logout(principal: CurrentAccount, request: Request, session: SessionDep) -> None:
    """Revoke this login (its refresh tokens and access tokens)."""
    from app_api.platform.accounts.tokens import decode_access, log_out

    auth = request.headers.get("authorization", "")
    await log_out(session, decode_access(auth.split(" ", 1)[1]))


async def _me(session: SessionDep, principal: CurrentAccount) -> MeOut:
    account = await session.get(Account, principal.id)
    if account is None:
        raise NotFound()
    name = account.real_name
    return MeOut(
        id=account.id,
        phone=mask_phone(account.phone),
        roles=list(account.roles),
        identity_level=account.identity_level,
        real_name=mask_name(name) if name else None,
        elderly_mode=account.elderly_mode,
        department=account.department,
        institution_id=account.institution_id,
        station_id=account.station_id,
    )


@router.get("/me")
async def me(session: SessionDep, principal: CurrentAccount) -> MeOut:
    """The logged-in account: phone masked, roles and identity level."""
    return await _me(session, principal)


@router.patch("/me")
async def update_me(body: MeUpdate, session: SessionDep, principal: CurrentAccount) -> MeOut:
    """Change the account's own preferences (elderly mode)."""
    account = await session.get(Account, principal.id)
    if account is None:
        raise NotFound()
    if body.elderly_mode is not None:
        account.elderly_mode = body.elderly_mode
        session.add(account)
        await session.flush()
        await invalidate(account.id)
    return await _me(session, principal)


@router.get("/me/export", response_model=export.DataExport)
async def export_my_data(
    session: SessionDep,
    principal: CurrentAccount,
    format: Annotated[Literal["json", "html"], Query(title="格式")] = "json",
) -> export.DataExport | HTMLResponse:
    """A copy of all the resident's data (PIPL right of access): JSON, or a readable HTML page with
    ``format=html``; what is not exported is listed with the reason. One export at a time: a second
    request while one is being built is 409 ``accounts.export_in_progress``."""
    out = await export.export(session, account_id=principal.id)
    if format == "html":
        return HTMLResponse(export.render_html(out))
    return export.DataExport.model_validate(out)


@router.post("/me/closure", response_model=closure.ClosureReceipt)
async def close_my_account(
    body: ClosureRequest, session: SessionDep, principal: CurrentAccount
) -> closure.ClosureReceipt:
    """Close the resident's own account (注销账户) with a fresh SMS code sent to its phone. Refused
    while anything is in progress (409 ``accounts.closure_in_progress``, with the reasons) and for
    staff (403 ``accounts.closure_staff``). What the law requires is kept, detached from the
    resident's identity; the rest is deleted; the receipt lists both, and every login ends."""
    return await closure.close(session, account_id=principal.id, code=body.code)
