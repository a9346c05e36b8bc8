from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Reason = Literal["购房", "租房", "还贷", "退休", "离职", "大病医疗", "加装电梯"]


class FundSummary(BaseModel):
    account_no: str
    holder_masked: str
    status: str
    employer: str
    balance_fen: int
    monthly_fen: int
    base_fen: int
    employer_rate: str
    personal_rate: str
    opened_on: dt.date
    months_contributed: int
    center: str


class Contribution(BaseModel):
    month: str
    employer_fen: int
    personal_fen: int
    total_fen: int
    employer: str


class ContributionPage(BaseModel):
    items: list[Contribution]
    total_fen: int


class FundLoan(BaseModel):
    loan_no: str
    principal_fen: int
    outstanding_fen: int
    annual_rate: str
    term_months: int
    monthly_payment_fen: int
    next_due_on: dt.date | None
    status: str


class EstimateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    house_price_fen: int = Field(gt=0, le=10**11)
    term_years: int = Field(ge=1, le=40)
    first_home: bool = True
    co_borrower: bool = False
    co_borrower_income_fen: int = Field(default=0, ge=0, le=10**9)


class Limit(BaseModel):
    name: str
    amount_fen: int
    how: str


class RuleUsed(BaseModel):
    rule_id: str
    title: str
    published_on: dt.date


class Estimate(BaseModel):
    max_loan_fen: int
    term_years: int
    annual_rate: str
    monthly_payment_fen: int
    total_interest_fen: int
    limits: list[Limit]
    binding_limit: str
    rule: RuleUsed
    note: str


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason
    amount_fen: int = Field(gt=0, le=10**10)
    bank_account: Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{12,19}$")]


class WithdrawalPublic(BaseModel):
    id: str
    reason: str
    amount_fen: int
    bank_account_masked: str
    status: str
    application_no: str | None
    center_message: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None
