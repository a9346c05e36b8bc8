"""Request and response bodies of the government services API."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from columns.gov_services.catalogue import ItemGuide

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


class DepartmentOut(BaseModel):
    name: str
    level: str
    address: str
    phone: str
    supervisor_phone: str


class DepartmentsOut(BaseModel):
    departments: list[DepartmentOut]


class _GuideHead(BaseModel):
    version: int
    fully_online: bool
    department_info: DepartmentOut | None


class ItemGuideOut(ItemGuide, _GuideHead):
    """The full guide of an item: ``version``, ``fully_online``, ``department_info``, then its fields."""


class PrefillFieldOut(BaseModel):
    key: str
    label: str


class PrefillGroupOut(BaseModel):
    group: str
    consent_text: str
    fields: list[PrefillFieldOut]
    materials: list[str]


class PrefillPreviewOut(BaseModel):
    code: str
    groups: list[PrefillGroupOut]


class ImportCounts(BaseModel):
    created: int
    updated: int
    unchanged: int


class ImportOut(BaseModel):
    imported: ImportCounts


class ItemVersionOut(BaseModel):
    code: str
    version: int


class SeedOut(BaseModel):
    result: str


class FormFieldOut(BaseModel):
    key: str
    label: str
    value: Any


class FormOut(BaseModel):
    """The filled form as the resident sees it (ID numbers masked)."""

    fields: list[FormFieldOut]
    ecerts: dict[str, Any]
    consents: dict[str, Any]


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
    phone: Annotated[
        str, StringConstraints(strip_whitespace=True, pattern=r"^1[0-9]{10}$|^0[0-9]{2,3}-?[0-9]{7,8}$")
    ]
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=200)]


class SubmitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delivery: str | None = None
    address: Address | None = None


class OneTapIn(BaseModel):
    """One-tap application (一键申报): the item, the record groups the resident consented to on the
    one screen, and how the result is delivered."""

    model_config = ConfigDict(extra="forbid")
    item_code: str = Field(min_length=4, max_length=40)
    client_key: ClientKey
    groups: list[str] = Field(min_length=1, max_length=3)
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


class RuleOutcomeOut(BaseModel):
    """One condition rule's outcome, as recorded at submission."""

    id: str
    kind: str
    hard: bool
    status: str = Field(description="met / unmet / unknown (需人工审核)")
    explain: str


class ConditionCheckOut(RuleOutcomeOut):
    condition: int | None = Field(description="所核验的受理条件序号（1 为第一条）")
    reason: str = Field(description="满足或不满足的原因；缺少数据时为“需人工审核”")


class ManualConditionOut(BaseModel):
    condition: int
    text: str
    reason: str


class EligibilityOut(BaseModel):
    """Which conditions the resident meets, before submitting."""

    code: str
    application_id: str | None
    can_submit: bool = Field(description="没有未满足的硬性条件")
    instant_possible: bool = Field(description="本事项可秒批，且全部条件均已核验满足")
    conditions: list[ConditionCheckOut]
    manual: list[ManualConditionOut] = Field(description="没有核验规则、由工作人员审核的条件")
    blocking: list[str]
    warnings: list[str]


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class FeePaymentOut(BaseModel):
    """One payment order opened for an application's fee."""

    id: str
    order_id: str
    out_trade_no: str
    provider: str
    amount_fen: int
    status: str
    paid_at: dt.datetime | None
    refund_reason: str | None
    refunded_at: dt.datetime | None
    created_at: dt.datetime


class FeePayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: Literal["wechat_v2", "wechat_v3", "alipay"]
    channel: Literal["miniprogram", "app"] = "app"
    payer_id: str | None = Field(default=None, max_length=128)  # WeChat openid for mini-program payments


class FeePayStarted(BaseModel):
    fee_payment_id: str
    order_id: str
    out_trade_no: str
    amount_fen: int
    fee_due_at: dt.datetime | None
    client_params: dict[str, str]


class FieldsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$", max_length=60)],
        Annotated[str, StringConstraints(max_length=200)],
    ] = Field(min_length=1, max_length=30)


class WithdrawIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


class FinanceFeeOut(BaseModel):
    """A fee payment as finance sees it: the department it is collected for and the ledger's order."""

    id: str
    department: str
    item_code: str
    item_name: str
    application_id: str
    application_number: str
    order_id: str
    out_trade_no: str
    provider: str
    amount_fen: int
    status: str
    paid_at: dt.datetime | None
    refund_no: str | None
    refund_reason: str | None
    refunded_at: dt.datetime | None
    created_at: dt.datetime


class FinanceDepartmentOut(BaseModel):
    """Per department over the listing: fees kept (paid, not refunded) and fees refunded."""

    department: str
    paid_count: int
    paid_fen: int
    refunded_count: int
    refunded_fen: int


class FinanceFeesOut(BaseModel):
    since: dt.date
    until: dt.date
    department: str | None
    fees: list[FinanceFeeOut]
    departments: list[FinanceDepartmentOut]


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
    form: FormOut | None = None
    uploads: list[UploadOut] | None = None
    timeline: list[EventOut] | None = None
    missing_materials: list[str] | None = None
    conditions: list[RuleOutcomeOut] = Field(default_factory=list)
    instant: bool = False
    instant_sampled: bool = False
    revoked_at: dt.datetime | None = None
    # The fee (0: free), when it is charged, the time limit while awaiting payment, whether paid.
    fee_fen: int = 0
    fee_charge_at: str | None = None
    fee_due_at: dt.datetime | None = None
    fee_paid: bool = False
    fee_payments: list[FeePaymentOut] | None = None


class RatingOut(BaseModel):
    id: str
    application_id: str
    score: int
    text: str | None
    follow_up: str
    answer: str | None
    created_at: dt.datetime


class ApplicationsOut(BaseModel):
    applications: list[ApplicationOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class QueueOut(BaseModel):
    department: str | None
    applications: list[ApplicationOut]


class FollowUpsOut(BaseModel):
    ratings: list[RatingOut]


class DepartmentFiguresOut(BaseModel):
    department: str
    submitted: int
    decided: int
    open: int
    overdue: int
    on_time_rate: float | None
    same_day_rate: float | None
    average_days: float | None


class SupervisionFiguresOut(BaseModel):
    days: int
    calendar_year: int
    calendar_known: bool
    departments: list[DepartmentFiguresOut]


class OverdueOut(BaseModel):
    id: str
    number: str
    item: str
    department: str
    status: str
    elapsed_days: float
    limit_days: int
    reviewer_id: str | None


class OverdueListOut(BaseModel):
    overdue: list[OverdueOut]


class DepartmentRatingsOut(BaseModel):
    department: str
    count: int
    average: float
    bad: int
    satisfaction: float | None
    open_follow_ups: int


class ItemRatingsOut(BaseModel):
    item_code: str
    count: int
    average: float
    bad: int
    satisfaction: float | None
    open_follow_ups: int


class RatingsSummaryOut(BaseModel):
    by: str
    figures: list[DepartmentRatingsOut] | list[ItemRatingsOut]


# ---------------------------------------------------------------- life events (一件事)


class BundleItemOut(BaseModel):
    code: str
    name: str | None
    department: str | None
    promised_days: int | None
    available: bool
    # Item codes whose results this item needs (it is filed when they are issued).
    waits_for: list[str] = []


class BundleSummaryOut(BaseModel):
    code: str
    name: str
    summary: str
    departments: list[str]
    items: list[BundleItemOut]
    available: bool


class BundlesOut(BaseModel):
    bundles: list[BundleSummaryOut]


class BundleFieldOut(BaseModel):
    key: str
    label: str
    required: bool
    # "resident": typed once; "records": filled from the data center with the consent.
    source: str
    choices: list[str] = []


class BundleMaterialOut(BaseModel):
    name: str
    required: bool
    ecert: str | None
    fill_fields: list[str]
    items: list[str]
    produced_by: list[str]
    from_resident: bool


class BundleConsentOut(BaseModel):
    group: str
    consent_text: str
    departments: list[str]


class BundleGuideOut(BundleSummaryOut):
    promised_days: int
    fields: list[BundleFieldOut]
    materials: list[BundleMaterialOut]
    consents: list[BundleConsentOut]
    delivery: list[str]
    # Waves of item codes: each wave is filed once the earlier waves' results are issued.
    order: list[list[str]]


class BundleApplicationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bundle_code: str = Field(min_length=4, max_length=40)
    client_key: ClientKey
    # Consent groups agreed on the one consent screen: the draft is filled from the records at once.
    consent_groups: list[str] = Field(default_factory=list, max_length=3)


class BundleChildOut(BaseModel):
    application_id: str
    number: str
    item_code: str
    item_name: str
    department: str
    status: str
    status_name: str
    limit_days: int
    due_at: dt.datetime | None
    submitted_at: dt.datetime | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    result_cert_no: str | None
    tracking_no: str | None


class BundleEventOut(BaseModel):
    at: dt.datetime
    kind: str
    title: str
    note: str | None
    actor_role: str
    item_code: str | None = None
    item_name: str | None = None
    department: str | None = None
    application_number: str | None = None


class BundleUploadOut(BaseModel):
    id: str
    material: str
    filename: str
    kind: str
    size: int
    created_at: dt.datetime


class BundleApplicationOut(BaseModel):
    id: str
    number: str
    bundle_code: str
    bundle_name: str
    status: str
    status_name: str
    delivery: str | None
    tracking_no: str | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    completed_at: dt.datetime | None
    delivered_at: dt.datetime | None
    form: FormOut | None = None
    uploads: list[BundleUploadOut] = []
    missing_materials: list[str] = []
    applications: list[BundleChildOut] = []
    timeline: list[BundleEventOut] = []


class BundleApplicationsOut(BaseModel):
    bundle_applications: list[BundleApplicationOut]
