from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id


class ExternalColumn(SQLModel, table=True):
    """A third-party column registered by an admin; its OAuth client is ``client_id``."""

    __tablename__ = "app_external_column"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=40)
    icon: str = Field(default="", max_length=200)
    category: str = Field(max_length=32)
    url: str = Field(max_length=500)
    identity_level: int = Field(default=1)
    allowed_scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # Compared character for character: no prefix, wildcard or normalisation.
    redirect_uris: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    operator_contact: str = Field(max_length=200)
    enabled: bool = Field(default=True)
    order: int = Field(default=100)
    client_id: str = Field(max_length=64, unique=True)
    client_secret_hash: str = Field(max_length=64)
    created_by: str = Field(foreign_key="app_account.id", max_length=32)
    created_at: dt.datetime = created_at_field()
    disabled_at: dt.datetime | None = datetime_field()


class SigningKey(SQLModel, table=True):
    """A key that signs ID and access tokens; the private half encrypted at rest."""

    __tablename__ = "app_oidc_signing_key"

    kid: str = Field(primary_key=True, max_length=64)
    alg: str = Field(max_length=10)
    private_enc: bytes = Field(sa_type=sa.LargeBinary)
    public_jwk: dict[str, str] = Field(sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()
    # Set when a newer key took over signing; published in JWKS until its last token expired.
    retired_at: dt.datetime | None = datetime_field()


class ColumnGrant(SQLModel, table=True):
    """A resident's authorisation of one column for some scopes; revocable."""

    __tablename__ = "app_external_column_grant"
    __table_args__ = (sa.UniqueConstraint("account_id", "column_id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", index=True, max_length=32)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    # The pairwise subject id this column knows the resident by (its server names residents by it).
    subject: str | None = Field(default=None, max_length=64, index=True)
    granted_at: dt.datetime = created_at_field()
    revoked_at: dt.datetime | None = datetime_field()


class AuthTicket(SQLModel, table=True):
    """A one-time ticket that carries the app's login into the webview's authorize page."""

    __tablename__ = "app_oidc_ticket"

    ticket_hash: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(foreign_key="app_account.id", max_length=32)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    used_at: dt.datetime | None = datetime_field()
    # The consent page it opened was answered: a second answer (a replayed form) is refused.
    decided_at: dt.datetime | None = datetime_field()


class AuthCode(SQLModel, table=True):
    """An authorization code (stored hashed), single use, bound to its PKCE challenge and redirect URI."""

    __tablename__ = "app_oidc_code"

    code_hash: str = Field(primary_key=True, max_length=64)
    column_id: str = Field(foreign_key="app_external_column.id", index=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", max_length=32)
    redirect_uri: str = Field(max_length=500)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    code_challenge: str = Field(max_length=128)
    nonce: str | None = Field(default=None, max_length=200)
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    used_at: dt.datetime | None = datetime_field()


class IssuedToken(SQLModel, table=True):
    """An access token issued to a column (its ``jti``), so it can be revoked before it expires."""

    __tablename__ = "app_oidc_token"

    jti: str = Field(primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", index=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    code_hash: str = Field(max_length=64, index=True)
    scopes: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    issued_at: dt.datetime = created_at_field()
    expires_at: dt.datetime = Field(sa_type=UTCDateTime)
    revoked_at: dt.datetime | None = datetime_field()


class ColumnMessageTemplate(SQLModel, table=True):
    """A message a column may send residents, proposed by the column and approved by an admin.

    ``text`` uses ``$name`` placeholders; ``status`` is ``pending``, ``approved`` or ``rejected``.
    """

    __tablename__ = "app_external_column_template"
    __table_args__ = (sa.UniqueConstraint("column_id", "key"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", index=True, max_length=32)
    key: str = Field(max_length=40)
    text: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=10)
    proposed_at: dt.datetime = created_at_field()
    decided_by: str | None = Field(default=None, max_length=32)
    decided_at: dt.datetime | None = datetime_field()
    decision_note: str | None = Field(default=None, max_length=200)


class ColumnMessage(SQLModel, table=True):
    """One message a column sent a resident, kept on the column's idempotency key (a resent request
    gets the same message, never a second one)."""

    __tablename__ = "app_external_column_message"
    __table_args__ = (
        sa.UniqueConstraint("column_id", "idempotency_key"),
        sa.Index("ix_app_external_column_message_quota", "column_id", "account_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    column_id: str = Field(foreign_key="app_external_column.id", max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    template_id: str = Field(foreign_key="app_external_column_template.id", max_length=32)
    idempotency_key: str = Field(max_length=64)
    # What was asked, so a resend with the same key and another body is told apart from a retry.
    request_hash: str = Field(max_length=64)
    notification_id: str = Field(max_length=32)
    created_at: dt.datetime = created_at_field()
