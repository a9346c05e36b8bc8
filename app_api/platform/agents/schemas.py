from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app_api.platform.accounts.schemas import Code, Phone

ClientKey = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:-]{8,64}$")]
ItemCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)]


class SubmissionIn(BaseModel):
    """One application an agent files for a resident (possibly queued offline)."""

    model_config = ConfigDict(extra="forbid")

    client_key: ClientKey = Field(description="代办端生成的唯一编号，重发时保持不变")
    resident_id: Id
    mandate_id: Id | None = None
    item_code: ItemCode
    form: dict[str, Any] = Field(default_factory=dict, max_length=200)
    pickup: bool = Field(default=False, description="办理结果寄送至代办点代领")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Items are checked one by one, so that one malformed item does not refuse the whole batch.
    items: list[Any] = Field(min_length=1)


class MandateScope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Phone = Field(description="居民本人手机号")
    scopes: list[str] = Field(min_length=1, max_length=10)
    items: list[ItemCode] = Field(default_factory=list, max_length=50, description="限定的事项编码，空为不限")
    days: int = Field(default=90, ge=1, le=365)


class InPersonMandate(MandateScope):
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=18, max_length=18)]
    document: Annotated[str, StringConstraints(min_length=1, max_length=40)] = "居民身份证"
    statement: Annotated[str, StringConstraints(min_length=4, max_length=300)] = (
        "本人已当面核验居民本人及其身份证件原件，居民本人同意委托代办。"
    )


class SmsConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, StringConstraints(min_length=8, max_length=64)]
    code: Code


class StationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_-]{2,32}$")]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=80)]
    kind: str = Field(default="village", pattern=r"^(liaison|village)$")
    city: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=40)]
    district: str | None = Field(default=None, max_length=40)
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]
    hours: str = Field(default="", max_length=120)
    contact_name: str | None = Field(default=None, max_length=40)
    contact_phone: str | None = Field(default=None, pattern=r"^[0-9-]{7,20}$")


class StationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=2, max_length=80)
    address: str | None = Field(default=None, min_length=2, max_length=200)
    hours: str | None = Field(default=None, max_length=120)
    contact_name: str | None = Field(default=None, max_length=40)
    contact_phone: str | None = Field(default=None, pattern=r"^[0-9-]{7,20}$")
    active: bool | None = None


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phone: Phone
    password: Annotated[str, StringConstraints(min_length=10, max_length=200)]


class ElderlyModeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


# -- responses ---------------------------------------------------------------------------------


class StationOut(BaseModel):
    id: str
    code: str
    name: str
    kind: str
    kind_name: str
    city: str
    district: str | None
    address: str
    hours: str
    contact_name: str | None
    phone: str | None


class StationList(BaseModel):
    stations: list[StationOut]


class AgentAssigned(BaseModel):
    id: str
    phone: str
    roles: list[str]
    station_id: str


class AgentMe(BaseModel):
    agent_id: str
    station: StationOut
    scopes: dict[str, str]
    filing_available: bool


class MandateCodeSent(BaseModel):
    request_id: str
    expires_in: int
    phone: str


class StationRef(BaseModel):
    id: str
    name: str | None


class _MandateOut(BaseModel):
    id: str
    station: StationRef
    scopes: list[str]
    scope_labels: list[str]
    items: list[str]
    method: str
    created_at: dt.datetime
    expires_at: dt.datetime
    withdrawn_at: dt.datetime | None
    state: str


# The other party, masked: {id (agents only), name, phone}; empty if the account is gone.
Person = dict[str, str | None]


class AgentsMandate(_MandateOut):
    """A mandate as the agent holding it sees it."""

    resident: Person


class ResidentsMandate(_MandateOut):
    """A mandate as the resident who gave it sees it."""

    agent: Person


class AgentsMandates(BaseModel):
    mandates: list[AgentsMandate]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class ResidentsMandates(BaseModel):
    mandates: list[ResidentsMandate]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class SubmissionOut(BaseModel):
    status: str
    application: dict[str, Any]
    submission_id: str


class BatchOut(BaseModel):
    # Per item: {index, client_key, status} and either {application, submission_id} or {error}.
    results: list[dict[str, Any]]
    summary: dict[str, int]


class ResidentApplications(BaseModel):
    applications: list[dict[str, Any]]


class MaterialUploaded(BaseModel):
    upload: dict[str, Any]


class ElderlyModeOut(BaseModel):
    resident_id: str
    elderly_mode: bool


class ActionOut(BaseModel):
    action: str
    at: dt.datetime
    station: str | None
    mandate_id: str | None
    subject_id: str | None


class ActionList(BaseModel):
    actions: list[ActionOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
