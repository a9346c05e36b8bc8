"""Response bodies of the data center endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class DataAccessOut(BaseModel):
    """One read of the resident's records: when, which kind, for what, on which consent."""

    at: dt.datetime
    record_type: str
    purpose: str
    consent_id: str | None
    fields: list[str]
    by_self: bool
    found: bool


class DataAccessList(BaseModel):
    items: list[DataAccessOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
