from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app_api.platform.column import Category

# The e-certificate types a column may be granted, one scope each (``ecert:<type>``): a column reads
# only the types it was granted, never the resident's whole wallet. Codes as in the city's library.
ECERT_TYPES: dict[str, str] = {
    "resident_id_card": "居民身份证",
    "household_register": "居民户口簿",
    "marriage_certificate": "结婚证",
    "birth_certificate": "出生医学证明",
    "driving_license": "机动车驾驶证",
    "business_license": "营业执照",
    "social_security_card": "社会保障卡",
    "disability_certificate": "残疾人证",
    "real_estate_certificate": "不动产权证书",
}
ECERT_PREFIX = "ecert:"

# What a column may ask to read. ``openid`` is the sign-in itself (a pairwise subject id).
SCOPE_NAMES: dict[str, str] = {
    "openid": "识别您的身份（为该栏目单独生成的用户编号）",
    "phone": "您的手机号码",
    "real_name": "您的真实姓名",
    "identity_level": "您的实名认证等级",
    "address": "您的户籍地址（从城市人口信息库读取）",
    **{ECERT_PREFIX + t: f"您的电子证照：{name}" for t, name in ECERT_TYPES.items()},
}


class ColumnCreate(BaseModel):
    name: str = Field(min_length=1, max_length=40, title="栏目名称")
    icon: str = Field(default="", max_length=200, title="图标")
    # One of the home screen's categories: a column is listed under its category.
    category: Category = Field(title="分类")
    url: str = Field(pattern=r"^https://", max_length=500, title="栏目地址")
    identity_level: int = Field(default=1, ge=0, le=3, title="实名等级")
    allowed_scopes: list[str] = Field(min_length=1, max_length=20, title="可申请的授权范围")
    redirect_uris: list[str] = Field(min_length=1, max_length=10, title="回调地址")
    operator_contact: str = Field(min_length=1, max_length=200, title="运营方联系方式")
    order: int = Field(default=100, title="排序")

    @field_validator("allowed_scopes")
    @classmethod
    def _openid(cls, v: list[str]) -> list[str]:
        unknown = [x for x in v if x not in SCOPE_NAMES]
        if unknown:
            raise ValueError(f"不支持的授权范围：{' '.join(x[:40] for x in unknown)}")
        if "openid" not in v:
            raise ValueError("授权范围必须包含 openid")
        return sorted(set(v))

    @field_validator("redirect_uris")
    @classmethod
    def _https(cls, v: list[str]) -> list[str]:
        for uri in v:
            if not uri.startswith("https://") or "#" in uri or len(uri) > 500:
                raise ValueError("回调地址必须是 https 地址，且不能包含 #")
        return v


class ColumnOut(BaseModel):
    id: str
    name: str
    icon: str
    category: str
    url: str
    identity_level: int
    allowed_scopes: list[str]
    redirect_uris: list[str]
    operator_contact: str
    enabled: bool
    order: int
    client_id: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class ColumnCreated(ColumnOut):
    # Shown once: only its hash is stored.
    client_secret: str


class ColumnList(BaseModel):
    columns: list[ColumnOut]


class TicketOut(BaseModel):
    ticket: str
    expires_in: int


class GrantOut(BaseModel):
    column_id: str
    column_name: str
    icon: str
    scopes: list[str]
    scope_names: list[str]
    granted_at: dt.datetime


class GrantList(BaseModel):
    grants: list[GrantOut]


class KeyRotated(BaseModel):
    kid: str


class TemplateIn(BaseModel):
    """A message template a column proposes (``$name`` placeholders)."""

    model_config = {"extra": "forbid"}
    key: str = Field(min_length=2, max_length=40, pattern=r"^[a-z][a-z0-9_]{1,39}$", title="模板标识")
    text: str = Field(min_length=1, max_length=200, title="模板内容")


class TemplateOut(BaseModel):
    id: str
    column_id: str
    key: str
    text: str
    status: Literal["pending", "approved", "rejected"]
    proposed_at: dt.datetime
    decided_at: dt.datetime | None = None
    decision_note: str | None = None


class TemplateList(BaseModel):
    templates: list[TemplateOut]


class TemplateDecision(BaseModel):
    model_config = {"extra": "forbid"}
    note: str | None = Field(default=None, max_length=200, title="审核意见")


class MessageIn(BaseModel):
    """A message to a resident the column knows by its pairwise subject id."""

    model_config = {"extra": "forbid"}
    sub: str = Field(min_length=1, max_length=64, title="用户编号（sub）")
    template: str = Field(min_length=2, max_length=40, title="模板标识")
    params: dict[str, str] = Field(default_factory=dict, max_length=10, title="模板参数")
    idempotency_key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$", title="幂等键")


class MessageOut(BaseModel):
    id: str
    template: str
    created_at: dt.datetime
    # False: this key's message had been sent already; nothing was sent again.
    sent_now: bool
