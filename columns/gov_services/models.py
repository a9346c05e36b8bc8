"""Tables of the government services column (prefix ``gov_services_``).

Items are versioned: every change an administrator makes writes a new ``ItemVersion`` holding the
whole guide, and an application points at the version it was filed under, so a later edit never
changes what a resident applied for. Personal data on applications (filled form, postal address)
is encrypted at rest.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id

# Application states. ``decided_at`` is set on approved/rejected: the clock stops there (办结).
DRAFT = "draft"
SUBMITTED = "submitted"
ACCEPTED = "accepted"
SUPPLEMENT = "supplement"
APPROVED = "approved"
REJECTED = "rejected"
POSTED = "posted"
DELIVERED = "delivered"
# An instant approval (秒批) a reviewer revoked within the window.
REVOKED = "revoked"
# A fee is due (at submission, or after acceptance) and not paid yet; unpaid in time it ends
# cancelled. The resident may withdraw an application that is not decided yet.
AWAITING_PAYMENT = "awaiting_payment"
CANCELLED = "cancelled"
WITHDRAWN = "withdrawn"
# A life event's application (一件事) that was never filed: the item whose result it needed ended
# without one, or it could not be filed once that result came.
NOT_FILED = "not_filed"
OPEN_STATES = (SUBMITTED, ACCEPTED, SUPPLEMENT)
DECIDED_STATES = (APPROVED, REJECTED, POSTED, DELIVERED, REVOKED)
STATUS_NAMES = {
    DRAFT: "草稿",
    SUBMITTED: "已提交",
    ACCEPTED: "已受理",
    SUPPLEMENT: "待补正",
    APPROVED: "已办结",
    REJECTED: "不予办理",
    POSTED: "结果已寄出",
    DELIVERED: "结果已送达",
    REVOKED: "已撤销",
    AWAITING_PAYMENT: "待缴费",
    CANCELLED: "已取消（逾期未缴费）",
    WITHDRAWN: "已撤回",
    NOT_FILED: "未提交",
}


class Department(SQLModel, table=True):
    __tablename__ = "gov_services_department"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=60, unique=True)
    level: str = Field(max_length=10)
    address: str = Field(max_length=200)
    phone: str = Field(max_length=20)
    supervisor_phone: str = Field(max_length=20)


class Item(SQLModel, table=True):
    """The current version of an item, with the fields lists and filters need."""

    __tablename__ = "gov_services_item"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=80)
    item_type: str = Field(max_length=10, index=True)
    department: str = Field(max_length=60, index=True)
    identity_level: int = 0
    promised_days: int = 0
    fully_online: bool = False
    version: int = 1
    current_version_id: str = Field(max_length=32)
    active: bool = True
    updated_at: dt.datetime = created_at_field()


class ItemVersion(SQLModel, table=True):
    __tablename__ = "gov_services_item_version"
    __table_args__ = (sa.UniqueConstraint("code", "version"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    code: str = Field(max_length=40, index=True)
    version: int
    # The guide (``CatalogueItem``) without the fields below, which are kept in their own columns.
    data: dict[str, Any] = Field(sa_type=sa.JSON)
    # Machine-checkable conditions (``columns.gov_services.rules``) and instant approval (秒批).
    rules: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=sa.JSON, sa_column_kwargs={"server_default": "[]"}
    )
    instant_approval: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    instant_sample_percent: int = Field(default=10, sa_column_kwargs={"server_default": "10"})
    created_by: str | None = Field(default=None, max_length=32)
    created_at: dt.datetime = created_at_field()


class Application(SQLModel, table=True):
    __tablename__ = "gov_services_application"
    __table_args__ = (sa.UniqueConstraint("applicant_id", "client_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    number: str = Field(max_length=24, unique=True)
    client_key: str = Field(max_length=64)
    applicant_id: str = Field(max_length=32, index=True)
    agent_id: str | None = Field(default=None, max_length=32)
    item_code: str = Field(max_length=40, index=True)
    item_version_id: str = Field(foreign_key="gov_services_item_version.id", max_length=32)
    item_version: int
    item_name: str = Field(max_length=80)
    department: str = Field(max_length=60, index=True)
    status: str = Field(default=DRAFT, max_length=20, index=True)
    # Filled form fields (from records or typed), JSON encrypted with the application id as AAD.
    form_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("gov_app:{id}", form="json")
    )
    # Consents used for prefill, by group.
    consents: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    # E-certificates attached by reference: material name -> {id, cert_no, title, cert_type}.
    ecerts: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    delivery: str | None = Field(default=None, max_length=10)
    # Recipient, phone and address for a posted result, JSON encrypted.
    address_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("gov_addr:{id}", form="json")
    )
    reviewer_id: str | None = Field(default=None, max_length=32)
    # Supervision: limits copied from the version; pauses as [[from, to|null, reason], ...] ISO strings.
    limit_days: int = 0
    accept_limit_days: int = 1
    # The steps between acceptance and delivery (审查, 决定, ...), from the version's step limits.
    review_limit_days: int = 0
    pauses: list[list[Any]] = Field(default_factory=list, sa_type=sa.JSON)
    due_at: dt.datetime | None = datetime_field(index=True)
    decision_reason: str | None = Field(default=None, max_length=500)
    # Fixed at the decision, so figures aggregate in SQL: working days used, within the limit,
    # decided on the day it was filed (当日办结).
    used_days: float | None = None
    on_time: bool | None = None
    same_day: bool | None = None
    result_cert_no: str | None = Field(default=None, max_length=60)
    # The conditions' evaluation at submission, which rules passed: [{id, kind, hard, status, explain}].
    rule_results: list[dict[str, Any]] = Field(
        default_factory=list, sa_type=sa.JSON, sa_column_kwargs={"server_default": "[]"}
    )
    # Approved by the rules at submission (秒批); sampled for a reviewer's after-the-fact review,
    # which ends when a reviewer confirms or revokes it.
    instant: bool = Field(default=False, sa_column_kwargs={"server_default": sa.false()})
    instant_sampled: bool = Field(default=False, index=True, sa_column_kwargs={"server_default": sa.false()})
    instant_reviewed_at: dt.datetime | None = datetime_field()
    instant_reviewed_by: str | None = Field(default=None, max_length=32)
    revoked_at: dt.datetime | None = datetime_field()
    tracking_no: str | None = Field(default=None, max_length=40)
    # The fee (``columns.gov_services.fees``) quoted at submission, when it is charged ("submit" or
    # "accept"), the time limit to pay it while ``awaiting_payment``, and the order that paid it.
    fee_fen: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    fee_charge_at: str | None = Field(default=None, max_length=10)
    fee_due_at: dt.datetime | None = datetime_field(index=True)
    fee_order_id: str | None = Field(default=None, max_length=32)
    # The life event (一件事) this application is one part of; its result is delivered with the others.
    bundle_id: str | None = Field(
        default=None, foreign_key="gov_services_bundle_application.id", index=True, max_length=32
    )
    created_at: dt.datetime = created_at_field()
    submitted_at: dt.datetime | None = datetime_field(index=True)
    accepted_at: dt.datetime | None = datetime_field()
    decided_at: dt.datetime | None = datetime_field()
    updated_at: dt.datetime = created_at_field()


class Bundle(SQLModel, table=True):
    """A life event (一件事): items of several departments done as one, with the fields the items do
    not ask themselves (the newborn's name) asked once. Seeded from ``data/bundles.json``."""

    __tablename__ = "gov_services_bundle"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    code: str = Field(max_length=40, unique=True)
    name: str = Field(max_length=80)
    summary: str = Field(max_length=500)
    item_codes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # [{"key": "newborn.name", "label": "新生儿姓名", "required": true}, ...]
    fields: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    promised_days: int = 0
    active: bool = True
    updated_at: dt.datetime = created_at_field()


# A life event's application: draft, processing (its items' applications are in their
# departments' queues, or wait for the result they need), completed (every result is in and was
# delivered once).
BUNDLE_DRAFT = "draft"
BUNDLE_PROCESSING = "processing"
BUNDLE_COMPLETED = "completed"
BUNDLE_STATUS_NAMES = {BUNDLE_DRAFT: "草稿", BUNDLE_PROCESSING: "办理中", BUNDLE_COMPLETED: "已全部办结"}


class BundleApplication(SQLModel, table=True):
    """A resident's life event: one form, one set of materials and one consent, fanned out on
    submission as one ``Application`` per item (``Application.bundle_id``); delivered once."""

    __tablename__ = "gov_services_bundle_application"
    __table_args__ = (sa.UniqueConstraint("applicant_id", "client_key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    number: str = Field(max_length=24, unique=True)
    client_key: str = Field(max_length=64)
    applicant_id: str = Field(max_length=32, index=True)
    bundle_code: str = Field(max_length=40, index=True)
    bundle_name: str = Field(max_length=80)
    status: str = Field(default=BUNDLE_DRAFT, max_length=20, index=True)
    # The combined form, JSON encrypted with the bundle application's id as AAD.
    form_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("gov_bundle:{id}", form="json"),
    )
    consents: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    ecerts: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    delivery: str | None = Field(default=None, max_length=10)
    address_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("gov_bundle_addr:{id}", form="json"),
    )
    tracking_no: str | None = Field(default=None, max_length=40)
    created_at: dt.datetime = created_at_field()
    submitted_at: dt.datetime | None = datetime_field()
    completed_at: dt.datetime | None = datetime_field()
    delivered_at: dt.datetime | None = datetime_field()
    updated_at: dt.datetime = created_at_field()


class BundleUpload(SQLModel, table=True):
    """A material uploaded once for a life event; each item's application that needs it gets an
    ``Upload`` row pointing at the same stored object when the life event is submitted."""

    __tablename__ = "gov_services_bundle_upload"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bundle_application_id: str = Field(
        foreign_key="gov_services_bundle_application.id", index=True, max_length=32
    )
    owner_id: str = Field(max_length=32)
    material: str = Field(max_length=100)
    filename: str = Field(max_length=200)
    kind: str = Field(max_length=10)
    size: int
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=200)
    created_at: dt.datetime = created_at_field()


class BundleEvent(SQLModel, table=True):
    """The life event's own timeline entries (its items' applications keep theirs in ``Event``)."""

    __tablename__ = "gov_services_bundle_event"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    bundle_application_id: str = Field(
        foreign_key="gov_services_bundle_application.id", index=True, max_length=32
    )
    kind: str = Field(max_length=30)
    title: str = Field(max_length=100)
    note: str | None = Field(default=None, max_length=500)
    actor_id: str | None = Field(default=None, max_length=32)
    actor_role: str = Field(max_length=20)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    at: dt.datetime = created_at_field()


class FeePayment(SQLModel, table=True):
    """One payment order opened for an application's fee (purpose ``gov_services.fee``, purpose
    reference = the application id): the department it is collected for, and what became of it.

    ``status``: ``open`` (ordered, not paid), ``paid`` (moved the application on), ``refunded``
    (paid, then returned: a second payment of one application, paid after the application ended,
    or the application was rejected or withdrawn). ``refund_no`` is the refund's number at
    payments, so a refund is asked for once.
    """

    __tablename__ = "gov_services_fee_payment"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", index=True, max_length=32)
    account_id: str = Field(max_length=32)
    department: str = Field(max_length=60, index=True)
    item_code: str = Field(max_length=40)
    item_name: str = Field(max_length=80)
    application_number: str = Field(max_length=24)
    order_id: str = Field(max_length=32, unique=True)
    out_trade_no: str = Field(max_length=32, unique=True)
    provider: str = Field(max_length=20)
    amount_fen: int
    status: str = Field(default="open", max_length=10, index=True)
    paid_at: dt.datetime | None = datetime_field()
    refund_no: str | None = Field(default=None, max_length=40)
    refund_reason: str | None = Field(default=None, max_length=100)
    refunded_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()


class Upload(SQLModel, table=True):
    """An uploaded material, checked by content and stored encrypted."""

    __tablename__ = "gov_services_upload"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", index=True, max_length=32)
    owner_id: str = Field(max_length=32)
    material: str = Field(max_length=100)
    filename: str = Field(max_length=200)
    kind: str = Field(max_length=10)  # pdf, jpeg, png, ofd
    size: int
    sha256: str = Field(max_length=64)
    storage_key: str = Field(max_length=200)
    created_at: dt.datetime = created_at_field()


class Event(SQLModel, table=True):
    """The resident-visible timeline of an application (the audit log keeps the tamper-proof copy)."""

    __tablename__ = "gov_services_event"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", index=True, max_length=32)
    kind: str = Field(max_length=30)
    title: str = Field(max_length=100)
    note: str | None = Field(default=None, max_length=500)
    actor_id: str | None = Field(default=None, max_length=32)
    actor_role: str = Field(max_length=20)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    at: dt.datetime = created_at_field()


class Warning_(SQLModel, table=True):
    """A supervision warning, sent once per application, scope and level."""

    __tablename__ = "gov_services_warning"
    __table_args__ = (sa.UniqueConstraint("application_id", "scope", "level"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", index=True, max_length=32)
    department: str = Field(max_length=60, index=True)
    scope: str = Field(max_length=20)  # total, accept, review
    level: str = Field(max_length=10)  # yellow, red
    elapsed_days: float
    limit_days: int
    notified: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    at: dt.datetime = created_at_field()


class Waybill(SQLModel, table=True):
    __tablename__ = "gov_services_waybill"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", unique=True, max_length=32)
    tracking_no: str = Field(max_length=40, unique=True)
    carrier: str = Field(default="EMS", max_length=20)
    status: str = Field(default="created", max_length=20)  # created, in_transit, delivered
    fee_fen: int = 0
    paid_by: str = Field(default="government", max_length=20)
    created_at: dt.datetime = created_at_field()
    delivered_at: dt.datetime | None = datetime_field()


class Rating(SQLModel, table=True):
    """好差评: one per application; 1-2 opens a follow-up the department must answer."""

    __tablename__ = "gov_services_rating"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    application_id: str = Field(foreign_key="gov_services_application.id", unique=True, max_length=32)
    item_code: str = Field(max_length=40, index=True)
    department: str = Field(max_length=60, index=True)
    rater_id: str = Field(max_length=32)
    score: int
    text: str | None = Field(default=None, max_length=500)
    follow_up: str = Field(default="none", max_length=10)  # none, open, answered
    answer: str | None = Field(default=None, max_length=1000)
    answered_by: str | None = Field(default=None, max_length=32)
    answered_at: dt.datetime | None = datetime_field()
    created_at: dt.datetime = created_at_field()
