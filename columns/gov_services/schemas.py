"""Request and response bodies of the government services API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ClientKey = Annotated[str, StringConstraints(strip_whitespace=True, min_length=8, max_length=64)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]


class SearchHitOut(BaseModel):
    code: str
    name: str
    score: float
    matched: str
    department: str
    item_type: str
    fully_online: bool
    promised_days: int


class SearchOut(BaseModel):
    query: str
    items: list[SearchHitOut]


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_code: str = Field(min_length=4, max_length=40)
    # Chosen by the client once per intended application: retries return the same application.
    client_key: ClientKey


class PrefillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    groups: list[str] = Field(min_length=1, max_length=3)


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
    phone: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^1\d{10}$|^0\d{2,3}-?\d{7,8}$")]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=200)]


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery: str | None = None
    address: Address | None = None


class SupplementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason
    materials: list[str] = Field(default_factory=list, max_length=30)


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=500)


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class RatingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    score: int = Field(ge=1, le=5)
    text: str | None = Field(default=None, max_length=500)


class AnswerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]


class EventOut(BaseModel):
    kind: str
    title: str
    note: str | None
    actor_role: str
    at: dt.datetime


class UploadOut(BaseModel):
    id: str
    material: str
    filename: str
    kind: str
    size: int
    created_at: dt.datetime


class ApplicationOut(BaseModel):
    id: str
    number: str
    item_code: str
    item_name: str
    item_version: int
    department: str
    status: str
    status_name: str
    delivery: str | None
    limit_days: int
    due_at: dt.datetime | None
    elapsed_days: float | None
    paused: bool
    decision_reason: str | None
    result_cert_no: str | None
    tracking_no: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    decided_at: dt.datetime | None
    form: dict[str, Any] | None = None
    uploads: list[UploadOut] | None = None
    timeline: list[EventOut] | None = None
    missing_materials: list[str] | None = None


class RatingOut(BaseModel):
    id: str
    application_id: str
    score: int
    text: str | None
    follow_up: str
    answer: str | None
    created_at: dt.datetime
