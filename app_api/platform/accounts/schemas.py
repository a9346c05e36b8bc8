from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^1[3-9][0-9]{9}$")]
# [0-9], not \d: the regex engine's \d also matches full-width and other scripts' digits.
Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")]


class SmsCodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Phone


class SmsCodeSent(BaseModel):
    sent: bool = True
    expires_in: int
    resend_after: int


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Phone
    code: Code


class StaffLoginRequest(LoginRequest):
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class MeOut(BaseModel):
    id: str
    phone: str
    roles: list[str]
    identity_level: int
    real_name: str | None = None
    elderly_mode: bool
    department: str | None = None
    institution_id: str | None = None
    station_id: str | None = None


class MeUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    elderly_mode: bool | None = None


class ClosureRequest(BaseModel):
    """注销账户: the SMS code just sent to the account's phone (``POST /auth/sms-codes``)."""

    model_config = ConfigDict(extra="forbid")
    code: Code = Field(title="短信验证码")
