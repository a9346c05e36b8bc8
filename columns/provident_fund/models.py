from __future__ import annotations

import datetime as dt
import enum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id


class WithdrawalStatus(enum.StrEnum):
    SUBMITTING = "submitting"  # recorded here, being handed to the center (outbox, retried)
    ACCEPTED = "accepted"  # the center accepted it (受理) and gave its number
    REFUSED = "refused"  # the center would not accept it
    FAILED = "failed"  # the center could not be reached after every retry


class Withdrawal(SQLModel, table=True):
    """A withdrawal application (提取申请), made with an L3 step-up."""

    __tablename__ = "provident_fund_withdrawal"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    fund_account_no: str = Field(max_length=32)
    reason: str = Field(max_length=20)
    amount_fen: int = Field(sa_type=sa.BigInteger)
    bank_account_enc: bytes = Field(
        sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("provident_fund.bank")
    )
    bank_account_masked: str = Field(max_length=40)
    status: str = Field(default=WithdrawalStatus.SUBMITTING.value, max_length=20)
    application_no: str | None = Field(default=None, max_length=40)
    center_message: str | None = Field(default=None, max_length=200)
    attempts: int = 0
    created_at: dt.datetime = created_at_field()
    decided_at: dt.datetime | None = datetime_field()
