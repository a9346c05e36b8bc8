from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Kind = Literal["bank", "insurer", "guarantor"]
ApplicantType = Literal["individual", "business"]
Scope = Literal["identity.name", "identity.id_number", "contact.phone", "business.registration"]
DEFAULT_SHARED: tuple[Scope, ...] = ("identity.name", "identity.id_number", "contact.phone")
# What residents read when they consent to share a scope.
SCOPE_NAMES: dict[str, str] = {
    "identity.name": "姓名",
    "identity.id_number": "身份证号码",
    "contact.phone": "手机号码",
    "business.registration": "企业名称和统一社会信用代码",
}
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=200)]


class InstitutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,39}$")]
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=60)]
    kind: Kind
    hotline: str = Field(default="", max_length=20)


class InstitutionPublic(BaseModel):
    id: str
    code: str
    name: str
    kind: str
    hotline: str


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=60)]
    description: str = Field(default="", max_length=1000)
    min_amount_fen: int = Field(gt=0, le=10**12)
    max_amount_fen: int = Field(gt=0, le=10**12)
    min_term_months: int = Field(ge=1, le=360)
    max_term_months: int = Field(ge=1, le=360)
    min_rate_bp: int = Field(ge=0, le=3600)
    max_rate_bp: int = Field(ge=0, le=3600)  # 24 % is the legal ceiling courts protect; 36 % absolute
    applicant_types: list[ApplicantType] = Field(min_length=1)
    materials: list[Annotated[str, StringConstraints(min_length=2, max_length=60)]] = Field(
        default_factory=list
    )
    shared_data: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SHARED))

    @model_validator(mode="after")
    def _ranges(self) -> ProductCreate:
        if self.min_amount_fen > self.max_amount_fen:
            raise ValueError("最低额度不能高于最高额度")
        if self.min_term_months > self.max_term_months:
            raise ValueError("最短期限不能长于最长期限")
        if self.min_rate_bp > self.max_rate_bp:
            raise ValueError("最低利率不能高于最高利率")
        return self


class ProductPublic(BaseModel):
    id: str
    institution_id: str
    institution_name: str
    institution_kind: str
    name: str
    description: str
    min_amount_fen: int
    max_amount_fen: int
    min_term_months: int
    max_term_months: int
    min_rate_bp: int
    max_rate_bp: int
    applicant_types: list[str]
    materials: list[str]
    shared_data: list[str]
    shared_data_names: list[str]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[Scope] = Field(min_length=1)
    agreed: Literal[True]


class ApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product_id: str = Field(max_length=32)
    applicant_type: ApplicantType = "individual"
    amount_fen: int = Field(gt=0, le=10**12)
    term_months: int = Field(ge=1, le=360)
    purpose: Text
    business_name: str | None = Field(default=None, max_length=100)
    business_credit_code: Annotated[str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{18}$")] | None = (
        None
    )
    consent: ConsentIn


class Supplement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=1000)]


class InfoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=500)]


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_fen: int = Field(gt=0, le=10**12)
    rate_bp: int = Field(ge=0, le=3600)
    term_months: int = Field(ge=1, le=360)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=300)]


class Disbursement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_fen: int = Field(gt=0, le=10**12)


class EventPublic(BaseModel):
    action: str
    from_status: str | None
    to_status: str
    created_at: dt.datetime


class ApplicationPublic(BaseModel):
    id: str
    product_id: str
    product_name: str
    institution_name: str
    applicant_type: str
    business_name: str | None
    amount_fen: int
    term_months: int
    purpose: str
    status: str
    info_request: str | None
    supplement: str | None
    approved_amount_fen: int | None
    approved_rate_bp: int | None
    approved_term_months: int | None
    reject_reason: str | None
    disbursed_fen: int | None
    disbursed_at: dt.datetime | None
    created_at: dt.datetime
    events: list[EventPublic] = Field(default_factory=list)


class ApplicantData(BaseModel):
    consent_valid: bool
    name: str | None = None
    id_number: str | None = None
    phone: str | None = None
    business_name: str | None = None
    business_credit_code: str | None = None


class OfficerApplication(ApplicationPublic):
    applicant: ApplicantData


class OfficerPage(BaseModel):
    items: list[OfficerApplication]
    total: int
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class InstitutionStats(BaseModel):
    institution_id: str
    institution_name: str
    applicants: int
    applications: int
    approvals: int
    approved_fen: int
    disbursements: int
    disbursed_fen: int


class Statistics(BaseModel):
    registered_applicants: int
    business_applicants: int
    applications: int
    approvals: int
    disbursements: int
    disbursed_fen: int
    institutions: list[InstitutionStats]
