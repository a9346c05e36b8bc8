from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import created_at_field, datetime_field, new_id


class OutboxMessage(SQLModel, table=True):
    """A job written in the same transaction as the change that asks for it."""

    __tablename__ = "app_outbox"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    task_name: str = Field(max_length=120)
    arguments: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()
    dispatched_at: dt.datetime | None = datetime_field(index=True)
    attempts: int = 0
