"""Request and response bodies of the mini-program endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app_api.platform.accounts.schemas import Code, Phone

LoginCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Ticket = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=100)]


class WeChatLoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: LoginCode = Field(description="wx.login() 返回的 code")


class AlipayLoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    auth_code: LoginCode = Field(description="my.getAuthCode() 返回的 authCode")


class PhoneByWeChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bind_ticket: Ticket
    phone_code: LoginCode = Field(description="getPhoneNumber 按钮回调中的 code")


class PhoneBySmsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bind_ticket: Ticket
    phone: Phone
    code: Code


class BindRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: LoginCode


class LoginOut(BaseModel):
    """Either tokens (``status`` = ``ok``), or a ticket to bind a phone with (``phone_required``)."""

    status: Literal["ok", "phone_required"]
    access_token: str | None = None
    refresh_token: str | None = None
    token_type: str = "bearer"
    expires_in: int | None = None
    new_account: bool = False
    elderly_mode: bool = False
    bind_ticket: str | None = None
    ticket_expires_in: int | None = None


class SubscribeResults(BaseModel):
    """What ``wx.requestSubscribeMessage`` answered: template id → accept / reject / ban / filter."""

    model_config = ConfigDict(extra="forbid")
    results: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=128)],
        Literal["accept", "reject", "ban", "filter"],
    ] = Field(min_length=1, max_length=20)


class BindingOut(BaseModel):
    """A mini-program identity of the account (no openid, no session key)."""

    model_config = ConfigDict(from_attributes=True)
    platform: str
    app_id: str
    bound_at: dt.datetime | None
    last_login_at: dt.datetime | None


class BindingsOut(BaseModel):
    bindings: list[BindingOut]


class UnbindOut(BaseModel):
    unbound: bool


class SubscribeTemplateOut(BaseModel):
    event: str
    template_id: str
    category: str


class SubscribeTemplatesOut(BaseModel):
    templates: list[SubscribeTemplateOut]


class SubscriptionAnswerOut(BaseModel):
    """What one answer left: messages the event may still send, or refused."""

    event: str
    remaining: int
    refused: bool


class SubscriptionsOut(BaseModel):
    subscriptions: list[SubscriptionAnswerOut]
