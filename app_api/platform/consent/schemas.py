"""Response bodies of the consent endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class ConsentOut(BaseModel):
    id: str
    purpose: str
    scopes: list[str]
    grantee: str | None
    granted_via: str
    text: str
    granted_at: dt.datetime
    expires_at: dt.datetime | None
    withdrawn_at: dt.datetime | None
    active: bool


class ConsentList(BaseModel):
    consents: list[ConsentOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
