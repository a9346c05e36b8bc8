from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id

# What a mandate can allow. "apply": file applications; "upload": add materials; "track": see the
# resident's applications and results; "pickup": have results posted to the station; "settings":
# switch the resident's elderly mode and notification preferences.
SCOPES: dict[str, str] = {
    "apply": "代为申请办理事项",
    "upload": "代为上传申请材料",
    "track": "查询办理进度和结果",
    "pickup": "办理结果寄送至代办点代领",
    "settings": "协助设置适老化模式",
}
STATION_KINDS = {"liaison": "异地联络站", "village": "村（社区）代办点"}


class Station(SQLModel, table=True):
    __tablename__ = "app_station"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    code: str = Field(max_length=32, unique=True)
    name: str = Field(max_length=80)
    kind: str = Field(default="village", max_length=16)
    city: str = Field(max_length=40, index=True)
    district: str | None = Field(default=None, max_length=40)
    address: str = Field(max_length=200)
    hours: str = Field(default="", max_length=120)
    contact_name: str | None = Field(default=None, max_length=40)
    contact_phone: str | None = Field(default=None, max_length=20)
    active: bool = True
    created_at: dt.datetime = created_at_field()


class Mandate(SQLModel, table=True):
    """A resident's authorisation of one agent, for some scopes and items, for a while."""

    __tablename__ = "app_mandate"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    resident_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    agent_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    station_id: str = Field(foreign_key="app_station.id", index=True, max_length=32)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # Item codes covered; empty = every item.
    items: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    method: str = Field(max_length=16)  # sms, in_person
    # In-person: what the agent attests (document seen, ID number hash and mask, statement).
    attestation: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    consent_id: str = Field(foreign_key="app_consent.id", max_length=32)
    created_at: dt.datetime = created_at_field()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    withdrawn_at: dt.datetime | None = datetime_field()
    withdrawn_by: str | None = Field(default=None, max_length=32)


class AgentAction(SQLModel, table=True):
    """Everything an agent does for a resident, with the agent, the station and the mandate used."""

    __tablename__ = "app_agent_action"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    station_id: str = Field(foreign_key="app_station.id", index=True, max_length=32)
    resident_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    mandate_id: str | None = Field(default=None, foreign_key="app_mandate.id", max_length=32)
    action: str = Field(max_length=40)
    subject_id: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    at: dt.datetime = created_at_field()


class Submission(SQLModel, table=True):
    """A filed submission, kept on the agent's client key so a resent one is not filed again."""

    __tablename__ = "app_agent_submission"
    __table_args__ = (
        sa.UniqueConstraint("agent_id", "client_key"),
        # The station's filings page: newest first within one station.
        sa.Index("ix_app_agent_submission_station_created", "station_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    agent_id: str = Field(foreign_key="app_account.id", max_length=32)
    client_key: str = Field(max_length=64)
    station_id: str = Field(foreign_key="app_station.id", max_length=32)
    resident_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    mandate_id: str = Field(foreign_key="app_mandate.id", max_length=32)
    item_code: str = Field(max_length=40)
    pickup: bool = False
    result: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()
