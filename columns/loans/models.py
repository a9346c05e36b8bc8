from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id


class Institution(SQLModel, table=True):
    __tablename__ = "loans_institution"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=60)
    kind: str = Field(max_length=20)  # bank | insurer | guarantor
    hotline: str = Field(default="", max_length=20)
    active: bool = True
    created_at: dt.datetime = created_at_field()


class Product(SQLModel, table=True):
    __tablename__ = "loans_product"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    institution_id: str = Field(foreign_key="loans_institution.id", index=True, max_length=32)
    name: str = Field(max_length=60)
    description: str = Field(default="", max_length=1000)
    min_amount_fen: int = Field(sa_type=sa.BigInteger)
    max_amount_fen: int = Field(sa_type=sa.BigInteger)
    min_term_months: int
    max_term_months: int
    # annual rates in basis points (345 = 3.45 %)
    min_rate_bp: int
    max_rate_bp: int
    applicant_types: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # individual | business
    materials: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # Named data the institution receives with an application (consent scopes).
    shared_data: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    active: bool = True
    created_at: dt.datetime = created_at_field()


class Status(enum.StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    INFO_REQUESTED = "info_requested"
    APPROVED = "approved"
    REJECTED = "rejected"
    DISBURSED = "disbursed"
    WITHDRAWN = "withdrawn"


OPEN = (Status.SUBMITTED, Status.ACCEPTED, Status.INFO_REQUESTED)
TRANSITIONS: dict[str, dict[Status, Status]] = {
    # action: {from: to}
    "accept": {Status.SUBMITTED: Status.ACCEPTED},
    "request_info": {Status.ACCEPTED: Status.INFO_REQUESTED},
    "supplement": {Status.INFO_REQUESTED: Status.ACCEPTED},
    "approve": {Status.ACCEPTED: Status.APPROVED},
    "reject": {s: Status.REJECTED for s in OPEN},
    "disburse": {Status.APPROVED: Status.DISBURSED},
    "withdraw": {s: Status.WITHDRAWN for s in OPEN},
}


class Application(SQLModel, table=True):
    __tablename__ = "loans_application"
    __table_args__ = (sa.Index("ix_loans_application_inst_status", "institution_id", "status"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    product_id: str = Field(foreign_key="loans_product.id", max_length=32)
    institution_id: str = Field(foreign_key="loans_institution.id", max_length=32)
    applicant_type: str = Field(max_length=20)
    business_name: str | None = Field(default=None, max_length=100)
    business_credit_code: str | None = Field(default=None, max_length=18)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    term_months: int
    purpose: str = Field(max_length=200)
    status: str = Field(default=Status.SUBMITTED.value, max_length=20)
    consent_id: str = Field(max_length=32)
    # The named data, captured at application and encrypted; shown to the institution's officers
    # only while the consent stands.
    shared_enc: bytes = Field(
        sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("loans.shared", form="json")
    )
    officer_id: str | None = Field(default=None, max_length=32)
    info_request: str | None = Field(default=None, max_length=500)
    supplement: str | None = Field(default=None, max_length=1000)
    approved_amount_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    approved_rate_bp: int | None = None
    approved_term_months: int | None = None
    reject_reason: str | None = Field(default=None, max_length=300)
    disbursed_fen: int | None = Field(default=None, sa_type=sa.BigInteger)
    disbursed_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()
    updated_at: dt.datetime = created_at_field()


class ApplicationEvent(SQLModel, table=True):
    __tablename__ = "loans_application_event"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="loans_application.id", index=True, max_length=32)
    action: str = Field(max_length=20)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    actor_id: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()
