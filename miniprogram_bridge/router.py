"""Mini-program endpoints: login, phone binding, bindings, WeChat subscription grants."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends

from app_api.core.db import SessionDep
from app_api.core.errors import ValidationFailed
from app_api.platform import notify
from app_api.platform.access import CurrentAccount, public
from miniprogram_bridge import service
from miniprogram_bridge.config import get_mp_settings
from miniprogram_bridge.schemas import (
    AlipayLoginRequest,
    BindRequest,
    LoginOut,
    PhoneBySmsRequest,
    PhoneByWeChatRequest,
    SubscribeResults,
    WeChatLoginRequest,
)

router = APIRouter(prefix="/mp", tags=["mini-program"])


def _out(r: service.LoginResult) -> LoginOut:
    if r.pair is None:
        return LoginOut(
            status="phone_required", bind_ticket=r.bind_ticket, ticket_expires_in=r.ticket_expires_in
        )
    return LoginOut(
        status="ok",
        access_token=r.pair.access_token,
        refresh_token=r.pair.refresh_token,
        expires_in=r.pair.expires_in,
        new_account=r.new_account,
        elderly_mode=bool(r.account and r.account.elderly_mode),
    )


@router.post("/wechat/login", dependencies=[Depends(public)])
async def wechat_login(body: WeChatLoginRequest, session: SessionDep) -> LoginOut:
    """Log in with the wx.login() code; a first login answers ``phone_required`` with a bind ticket."""
    return _out(await service.wechat_login(session, code=body.code))


@router.post("/wechat/phone", dependencies=[Depends(public)])
async def wechat_phone(body: PhoneByWeChatRequest, session: SessionDep) -> LoginOut:
    """Finish a first WeChat login with the phone number WeChat vouches for (getPhoneNumber)."""
    return _out(
        await service.bind_phone_wechat(session, bind_ticket=body.bind_ticket, phone_code=body.phone_code)
    )


@router.post("/alipay/login", dependencies=[Depends(public)])
async def alipay_login(body: AlipayLoginRequest, session: SessionDep) -> LoginOut:
    """Log in with the my.getAuthCode() code; a first login answers ``phone_required``."""
    return _out(await service.alipay_login(session, auth_code=body.auth_code))


@router.post("/phone/sms", dependencies=[Depends(public)])
async def phone_by_sms(body: PhoneBySmsRequest, session: SessionDep) -> LoginOut:
    """Finish a first login (WeChat or Alipay) with an SMS code sent by ``POST /auth/sms-codes``."""
    return _out(
        await service.bind_phone_sms(session, bind_ticket=body.bind_ticket, phone=body.phone, code=body.code)
    )


def _binding_out(b: Any) -> dict[str, Any]:
    return {
        "platform": b.platform,
        "app_id": b.app_id,
        "bound_at": b.bound_at,
        "last_login_at": b.last_login_at,
    }


@router.get("/bindings")
async def my_bindings(principal: CurrentAccount, session: SessionDep) -> dict[str, Any]:
    """This account's mini-program identities (no openids, no session keys)."""
    return {"bindings": [_binding_out(b) for b in await service.bindings_of(session, principal.id)]}


@router.post("/{platform}/bind")
async def bind(
    platform: Literal["wechat", "alipay"], body: BindRequest, principal: CurrentAccount, session: SessionDep
) -> dict[str, Any]:
    """Link the mini-program identity behind a login code to the logged-in account."""
    b = await service.bind_logged_in(session, account_id=principal.id, platform=platform, code=body.code)
    return _binding_out(b)


@router.delete("/bindings/{platform}")
async def unbind(
    platform: Literal["wechat", "alipay"], principal: CurrentAccount, session: SessionDep
) -> dict[str, Any]:
    """Unlink this account from its mini-program identity on one platform."""
    return {"unbound": await service.unbind(session, account_id=principal.id, platform=platform)}


@router.get("/wechat/subscribe-templates")
async def subscribe_templates(principal: CurrentAccount) -> dict[str, Any]:
    """Template ids to pass to wx.requestSubscribeMessage, by event."""
    ids = get_mp_settings().wechat_template_ids
    tpls = notify.templates()
    return {
        "templates": [
            {"event": key, "template_id": tid, "category": tpls[key].category}
            for key, tid in sorted(ids.items())
            if key in tpls and tpls[key].wechat_fields
        ]
    }


@router.post("/wechat/subscriptions")
async def report_subscriptions(
    body: SubscribeResults, principal: CurrentAccount, session: SessionDep
) -> dict[str, Any]:
    """Record the resident's answers to wx.requestSubscribeMessage (each accept allows one message)."""
    by_id = {tid: key for key, tid in get_mp_settings().wechat_template_ids.items()}
    unknown = sorted(t for t in body.results if t not in by_id)
    if unknown:
        raise ValidationFailed("存在未知的订阅消息模板", unknown=unknown)
    out = []
    for tid, answer in body.results.items():
        if answer == "filter":  # hidden by WeChat's review: nothing was asked
            continue
        sub = await notify.record_subscription(
            session,
            account_id=principal.id,
            channel="wechat",
            template=by_id[tid],
            accepted=answer == "accept",
        )
        out.append({"event": sub.template, "remaining": sub.remaining, "refused": sub.refused_at is not None})
    return {"subscriptions": out}
