from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=100)]
Body = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=5000)]
Dept = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=60)]


class NoticeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Title
    body: Body
    department: Dept
    kind: Literal["通知", "公告", "停水预告", "停电预告", "停气预告", "政策解读"] = "通知"
    pinned: bool = False


class NoticePublic(BaseModel):
    id: str
    title: str
    body: str
    department: str
    kind: str
    pinned: bool
    published_at: dt.datetime


class NoticePage(BaseModel):
    items: list[NoticePublic]
    total: int
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
