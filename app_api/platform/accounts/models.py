from __future__ import annotations

import datetime as dt
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import decrypt_str, encrypted_column
from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id, utcnow


class Role(StrEnum):
    resident = "resident"
    agent = "agent"
    reviewer = "reviewer"
    finance = "finance"
    bank_officer = "bank_officer"
    admin = "admin"


STAFF_ROLES = frozenset({Role.agent, Role.reviewer, Role.finance, Role.bank_officer, Role.admin})


class Account(SQLModel, table=True):
    __tablename__ = "app_account"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    phone_hash: str = Field(max_length=64, unique=True)
    phone_enc: bytes = Field(sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("phone"))
    roles: list[str] = Field(default_factory=lambda: [Role.resident.value], sa_type=sa.JSON)
    identity_level: int = 1
    real_name_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("name")
    )
    id_number_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("id_number")
    )
    # Unique: one citizen ID verifies one account (NULLs, the unverified, do not collide).
    id_number_hash: str | None = Field(default=None, max_length=64, unique=True)
    password_hash: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=64)
    institution_id: str | None = Field(default=None, max_length=64)
    station_id: str | None = Field(default=None, max_length=64)
    supervisor_of: str | None = Field(default=None, max_length=64)
    elderly_mode: bool = False
    is_active: bool = True
    created_at: dt.datetime = created_at_field()
    last_login_at: dt.datetime | None = datetime_field()

    @property
    def phone(self) -> str:
        return decrypt_str(self.phone_enc, aad="phone")

    @property
    def real_name(self) -> str | None:
        return decrypt_str(self.real_name_enc, aad="name") if self.real_name_enc else None

    @property
    def id_number(self) -> str | None:
        return decrypt_str(self.id_number_enc, aad="id_number") if self.id_number_enc else None

    @property
    def is_staff(self) -> bool:
        return any(r in STAFF_ROLES for r in self.roles)


class RefreshToken(SQLModel, table=True):
    """One refresh token of a rotation family; a spent token presented again revokes the family."""

    __tablename__ = "app_refresh_token"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    family_id: str = Field(index=True, max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    issued_at: dt.datetime = created_at_field()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    used_at: dt.datetime | None = datetime_field()
    revoked_at: dt.datetime | None = datetime_field()


class TokenRevocation(SQLModel, table=True):
    """A revoked token family (a logout, or a spent refresh token presented again): the durable record.

    Redis only caches these (``accounts.revocation``); access checks rebuild the cache from this table,
    so a wiped Redis never brings a logged-out token back.
    """

    __tablename__ = "app_token_revocation"

    family_id: str = Field(primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    reason: str = Field(max_length=32)
    revoked_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
