"""Mini-program endpoints: login, phone binding, bindings, WeChat subscription grants."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends

from app_api.core.db import SessionDep
from app_api.platform.access import CurrentAccount, public
from miniprogram_bridge import service
from miniprogram_bridge.schemas import (
    AlipayLoginRequest,
    BindingOut,
    BindingsOut,
    BindRequest,
    LoginOut,
    PhoneBySmsRequest,
    PhoneByWeChatRequest,
    SubscribeResults,
    SubscribeTemplatesOut,
    SubscriptionsOut,
    UnbindOut,
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


@router.get("/bindings")
async def my_bindings(principal: CurrentAccount, session: SessionDep) -> BindingsOut:
    """This account's mini-program identities (no openids, no session keys)."""
    rows = await service.bindings_of(session, principal.id)
    return BindingsOut(bindings=[BindingOut.model_validate(b) for b in rows])


@router.post("/{platform}/bind")
async def bind(
    platform: Literal["wechat", "alipay"], body: BindRequest, principal: CurrentAccount, session: SessionDep
) -> BindingOut:
    """Link the mini-program identity behind a login code to the logged-in account."""
    b = await service.bind_logged_in(session, account_id=principal.id, platform=platform, code=body.code)
    return BindingOut.model_validate(b)


@router.delete("/bindings/{platform}")
async def unbind(
    platform: Literal["wechat", "alipay"], principal: CurrentAccount, session: SessionDep
) -> UnbindOut:
    """Unlink this account from its mini-program identity on one platform."""
    return UnbindOut(unbound=await service.unbind(session, account_id=principal.id, platform=platform))


@router.get("/wechat/subscribe-templates")
async def subscribe_templates(principal: CurrentAccount) -> SubscribeTemplatesOut:
    """Template ids to pass to wx.requestSubscribeMessage, by event."""
    return SubscribeTemplatesOut(templates=service.subscribe_templates())


@router.post("/wechat/subscriptions")
async def report_subscriptions(
    body: SubscribeResults, principal: CurrentAccount, session: SessionDep
) -> SubscriptionsOut:
    """Record the resident's answers to wx.requestSubscribeMessage (each accept allows one message)."""
    subs = await service.record_subscriptions(session, account_id=principal.id, results=body.results)
    return SubscriptionsOut(subscriptions=subs)
