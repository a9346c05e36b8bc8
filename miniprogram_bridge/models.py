"""Mini-program identities bound to accounts."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id


class MiniProgramBinding(SQLModel, table=True):
    """One mini-program user (openid of one app on one platform); ``account_id`` is set once the
    phone is proved. The WeChat ``session_key`` is kept encrypted and never leaves the server."""

    __tablename__ = "miniprogram_bridge_binding"
    __table_args__ = (sa.UniqueConstraint("platform", "app_id", "openid"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    platform: str = Field(max_length=10)  # wechat, alipay
    app_id: str = Field(max_length=64)
    openid: str = Field(max_length=128)
    unionid: str | None = Field(default=None, max_length=128, index=True)
    account_id: str | None = Field(default=None, foreign_key="app_account.id", index=True, max_length=32)
    session_key_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("", not_exported="小程序会话密钥属于安全数据，导出会危及账户安全"),
    )
    created_at: dt.datetime = created_at_field()
    bound_at: dt.datetime | None = datetime_field()
    last_login_at: dt.datetime | None = datetime_field()
