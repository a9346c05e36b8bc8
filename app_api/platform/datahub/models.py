"""The city data center's records, as the local adapter keeps them (seeded in development).

Personal fields are encrypted; ID numbers are found through a keyed hash.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import encrypted_column
from app_api.core.db import created_at_field, datetime_field, new_id


class PopulationRecord(SQLModel, table=True):
    __tablename__ = "app_datahub_person"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    id_number_hash: str = Field(max_length=64, unique=True)
    id_number_enc: bytes = Field(sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("id_number"))
    name_enc: bytes = Field(sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("name"))
    gender: str = Field(max_length=4)
    birth_date: dt.date
    ethnicity: str = Field(default="汉族", max_length=20)
    address_enc: bytes = Field(sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("address"))
    household: str = Field(default="", max_length=100)
    marital_status: str = Field(default="", max_length=10)
    photo_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("id_photo", form="bytes")
    )
    updated_at: dt.datetime = created_at_field()


class LegalPersonRecord(SQLModel, table=True):
    __tablename__ = "app_datahub_legal_person"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    uscc: str = Field(max_length=18, unique=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=40)
    legal_rep_id_hash: str = Field(max_length=64, index=True)
    legal_rep_name_enc: bytes = Field(sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("name"))
    address: str = Field(max_length=200)
    business_scope: str = Field(default="", max_length=500)
    registered_capital_fen: int = Field(default=0, sa_type=sa.BigInteger)
    established_on: dt.date


class ECertificate(SQLModel, table=True):
    """An e-certificate: with the local adapter the record itself; with the city's library a cache of
    what we issued there, showing whether it has arrived (``state``) and whether it was revoked.

    ``cert_no`` is the certificate's number in the library and the idempotency key of issuing it.
    """

    __tablename__ = "app_datahub_certificate"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    holder_id_hash: str = Field(max_length=64, index=True)
    # The holder's ID number, encrypted: sent to the library by the issuing job.
    holder_id_enc: bytes | None = Field(
        default=None, sa_type=sa.LargeBinary, sa_column_kwargs=encrypted_column("id_number")
    )
    # pending: written here, not yet in the library; issued: the library has it.
    state: str = Field(
        default="issued", max_length=16, index=True, sa_column_kwargs={"server_default": "issued"}
    )
    cert_type: str = Field(max_length=60, index=True)
    cert_no: str = Field(max_length=60, unique=True)
    title: str = Field(max_length=100)
    issuer: str = Field(max_length=100)
    issued_on: dt.date
    valid_until: dt.date | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    source_ref: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = created_at_field()
    issued_at: dt.datetime | None = datetime_field()
    revoked_at: dt.datetime | None = datetime_field()
    revoke_reason: str | None = Field(default=None, max_length=200)
    # When the library was told of the revocation (None while the job is still on its way).
    revoke_sent_at: dt.datetime | None = datetime_field()


class DataAccessLog(SQLModel, table=True):
    """Every read of a resident's data through the gateway: who (and in which role), about whom, for
    what, for which application, on which consent."""

    __tablename__ = "app_datahub_access"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    accessor_id: str = Field(max_length=32, index=True)
    # Who, as the resident is told (``access_log.Actor``): resident, officer, agent, institution,
    # system or account; None on reads recorded before actors were.
    actor_kind: str | None = Field(default=None, max_length=16)
    # The officer's department, the agent's station id, the bank officer's institution id.
    actor_org: str | None = Field(default=None, max_length=64)
    mandate_id: str | None = Field(default=None, max_length=32)
    job: str | None = Field(default=None, max_length=80)
    # The application the read served, as the resident knows it (办件编号).
    application_ref: str | None = Field(default=None, max_length=64)
    subject_account_id: str | None = Field(default=None, max_length=32, index=True)
    subject_hash: str = Field(max_length=64, index=True)
    record_type: str = Field(max_length=30)
    purpose: str = Field(max_length=80)
    consent_id: str | None = Field(default=None, max_length=32)
    fields: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    found: bool = True
    at: dt.datetime = created_at_field()
