from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, utcnow


class ColumnSetting(SQLModel, table=True):
    """An administrator's choices for one column; absent rows mean the manifest's defaults."""

    __tablename__ = "app_column_setting"

    slug: str = Field(primary_key=True, max_length=40)
    enabled: bool = True
    position: int = 100
    category: str | None = Field(default=None, max_length=20)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_by: str | None = Field(default=None, max_length=32)
