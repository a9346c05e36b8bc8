"""Response bodies of the audit endpoints."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field


class AuditEntryOut(BaseModel):
    seq: int
    at: dt.datetime
    action: str
    actor_id: str | None
    subject_type: str | None
    subject_id: str | None
    data: dict[str, Any]
    request_id: str | None
    prev_hash: str
    hash: str


class AuditEntries(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class ChainCheck(BaseModel):
    ok: bool
    checked: int
    first_broken_seq: int | None
    reason: str | None
