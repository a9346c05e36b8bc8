from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import created_at_field, datetime_field, new_id


class Consent(SQLModel, table=True):
    """A resident's recorded consent for one purpose over named groups of data; withdrawable."""

    __tablename__ = "app_consent"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    purpose: str = Field(max_length=80, index=True)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # Who may use it: None = the platform on the resident's own behalf; else an agent, an institution.
    grantee: str | None = Field(default=None, max_length=64)
    granted_via: str = Field(default="self", max_length=32)
    text: str = Field(default="", max_length=500)
    granted_at: dt.datetime = created_at_field()
    expires_at: dt.datetime | None = datetime_field()
    withdrawn_at: dt.datetime | None = datetime_field()
