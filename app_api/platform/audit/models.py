from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field

GENESIS = "0" * 64


class AuditEvent(SQLModel, table=True):
    __tablename__ = "app_audit_event"

    seq: int = Field(primary_key=True, sa_type=sa.BigInteger, sa_column_kwargs={"autoincrement": False})
    at: dt.datetime = created_at_field()
    action: str = Field(max_length=80, index=True)
    actor_id: str | None = Field(default=None, max_length=64, index=True)
    subject_type: str | None = Field(default=None, max_length=64)
    subject_id: str | None = Field(default=None, max_length=64, index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    request_id: str | None = Field(default=None, max_length=64)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # The digest of what the entry says (time, action, actor, subject, data), made when it is
    # recorded; ``hash`` links it into the chain (see ``audit.service``). None on entries written
    # before it existed, whose ``hash`` covers their content directly.
    content_hash: str | None = Field(default=None, max_length=64)


class AuditHead(SQLModel, table=True):
    """The single row holding the chain's tip; updating it serialises appends."""

    __tablename__ = "app_audit_head"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=sa.BigInteger)
    hash: str = Field(default=GENESIS, max_length=64)
    updated_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
