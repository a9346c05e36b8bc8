from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from app_api.core.db import created_at_field, datetime_field, new_id


class Notice(SQLModel, table=True):
    __tablename__ = "notices_notice"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    title: str = Field(max_length=100)
    body: str = Field(max_length=5000)
    department: str = Field(max_length=60)
    kind: str = Field(default="通知", max_length=20)
    pinned: bool = False
    published_at: dt.datetime = created_at_field()
    withdrawn_at: dt.datetime | None = datetime_field()
    created_by: str | None = Field(default=None, max_length=32)
