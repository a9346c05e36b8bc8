"""External columns: registration by an admin, enable/disable, residents' grants."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import lock_for_writing, on_commit, utcnow
from app_api.platform import audit
from app_api.platform.home.service import invalidate_views
from app_api.platform.openplatform.errors import ColumnExists, ColumnNotFound, GrantNotFound
from app_api.platform.openplatform.models import ColumnGrant, ExternalColumn, IssuedToken
from app_api.platform.openplatform.schemas import ColumnCreate


def secret_hash(secret: str) -> str:
    # The secret is 256 random bits, so a plain SHA-256 is as strong as a slow hash here.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(column: ExternalColumn, secret: str) -> bool:
    return hmac.compare_digest(column.client_secret_hash, secret_hash(secret))


async def register(session: AsyncSession, *, data: ColumnCreate, actor_id: str) -> tuple[ExternalColumn, str]:
    """Register a column; returns it with its client secret (shown once, stored hashed)."""
    if (await session.exec(select(ExternalColumn).where(ExternalColumn.name == data.name))).first():
        raise ColumnExists()
    secret = secrets.token_urlsafe(32)
    column = ExternalColumn(
        **data.model_dump(),
        client_id="col_" + secrets.token_hex(12),
        client_secret_hash=secret_hash(secret),
        created_by=actor_id,
    )
    session.add(column)
    await session.flush()
    on_commit(session, invalidate_views)  # the home screen lists it
    await audit.record(
        session,
        action="openplatform.column_registered",
        actor_id=actor_id,
        subject_type="external_column",
        subject_id=column.id,
        data={"client_id": column.client_id, "scopes": column.allowed_scopes},
    )
    return column, secret


async def rotate_client_secret(
    session: AsyncSession, *, column_id: str, actor_id: str
) -> tuple[ExternalColumn, str]:
    """A new client secret (shown once, stored hashed); the old one stops working at once.

    The row is locked first: two admins rotating at once are taken one after the other, and the
    secret the second one is shown is the one that works (both rotations audited)."""
    await lock_for_writing(session)
    column = await session.get(ExternalColumn, column_id, with_for_update=True)
    if column is None:
        raise ColumnNotFound()
    secret = secrets.token_urlsafe(32)
    column.client_secret_hash = secret_hash(secret)
    session.add(column)
    await session.flush()
    await audit.record(
        session,
        action="openplatform.client_secret_rotated",
        actor_id=actor_id,
        subject_type="external_column",
        subject_id=column.id,
        data={"client_id": column.client_id},
    )
    return column, secret


async def get(session: AsyncSession, column_id: str) -> ExternalColumn:
    column = await session.get(ExternalColumn, column_id)
    if column is None:
        raise ColumnNotFound()
    return column


async def by_client_id(session: AsyncSession, client_id: str) -> ExternalColumn | None:
    return (await session.exec(select(ExternalColumn).where(ExternalColumn.client_id == client_id))).first()


async def list_all(session: AsyncSession) -> list[ExternalColumn]:
    q = select(ExternalColumn).order_by(col(ExternalColumn.order), col(ExternalColumn.created_at))
    return list((await session.exec(q)).all())


async def revoke_tokens(session: AsyncSession, *, column_id: str, account_id: str | None = None) -> int:
    q = sa.update(IssuedToken).where(
        col(IssuedToken.column_id) == column_id, col(IssuedToken.revoked_at).is_(None)
    )
    if account_id is not None:
        q = q.where(col(IssuedToken.account_id) == account_id)
    res = await session.exec(q.values(revoked_at=utcnow()))
    return int(res.rowcount or 0)


async def set_enabled(
    session: AsyncSession, *, column_id: str, enabled: bool, actor_id: str
) -> ExternalColumn:
    """Enable or disable a column; disabling revokes every token it holds (checked on each use)."""
    column = await get(session, column_id)
    revoked = 0
    column.enabled = enabled
    column.disabled_at = None if enabled else utcnow()
    if not enabled:
        revoked = await revoke_tokens(session, column_id=column.id)
    session.add(column)
    await session.flush()
    on_commit(session, invalidate_views)  # on or off the home screen
    await audit.record(
        session,
        action="openplatform.column_enabled" if enabled else "openplatform.column_disabled",
        actor_id=actor_id,
        subject_type="external_column",
        subject_id=column.id,
        data={"tokens_revoked": revoked},
    )
    return column


async def grants_of(session: AsyncSession, account_id: str) -> list[tuple[ColumnGrant, ExternalColumn]]:
    q = (
        select(ColumnGrant, ExternalColumn)
        .join(ExternalColumn, col(ExternalColumn.id) == col(ColumnGrant.column_id))
        .where(col(ColumnGrant.account_id) == account_id, col(ColumnGrant.revoked_at).is_(None))
        .order_by(col(ColumnGrant.granted_at).desc())
    )
    return [(g, c) for g, c in (await session.exec(q)).all()]


async def active_grant(session: AsyncSession, *, account_id: str, column_id: str) -> ColumnGrant | None:
    q = select(ColumnGrant).where(
        ColumnGrant.account_id == account_id,
        ColumnGrant.column_id == column_id,
        col(ColumnGrant.revoked_at).is_(None),
    )
    return (await session.exec(q)).first()


async def record_grant(session: AsyncSession, *, account_id: str, column_id: str, scopes: list[str]) -> None:
    """Remember the resident's consent (widened to the union with an earlier one), audited."""
    grant = (
        await session.exec(
            select(ColumnGrant).where(
                ColumnGrant.account_id == account_id, ColumnGrant.column_id == column_id
            )
        )
    ).first()
    if grant is None:
        grant = ColumnGrant(account_id=account_id, column_id=column_id, scopes=sorted(scopes))
    if grant.subject is None:
        column = await session.get(ExternalColumn, column_id)
        if column is not None:
            from app_api.platform.openplatform.oidc import pairwise_sub

            grant.subject = pairwise_sub(account_id, column.client_id)
    elif grant.revoked_at is not None:
        grant.scopes, grant.revoked_at, grant.granted_at = sorted(scopes), None, utcnow()
    else:
        grant.scopes = sorted(set(grant.scopes) | set(scopes))
    session.add(grant)
    await session.flush()
    await audit.record(
        session,
        action="openplatform.grant",
        actor_id=account_id,
        subject_type="external_column",
        subject_id=column_id,
        data={"scopes": grant.scopes},
    )


async def revoke_grant(session: AsyncSession, *, account_id: str, column_id: str) -> None:
    """The resident withdraws a column's authorisation: the grant and its tokens end now."""
    grant = await active_grant(session, account_id=account_id, column_id=column_id)
    if grant is None:
        raise GrantNotFound()
    grant.revoked_at = utcnow()
    session.add(grant)
    revoked = await revoke_tokens(session, column_id=column_id, account_id=account_id)
    await session.flush()
    # The registry reads it was allowed end with it (imported here: claims reads the grant's column).
    from app_api.platform.openplatform.claims import withdraw_consents

    await withdraw_consents(session, account_id=account_id, column_id=column_id)
    await audit.record(
        session,
        action="openplatform.grant_revoked",
        actor_id=account_id,
        subject_type="external_column",
        subject_id=column_id,
        data={"tokens_revoked": revoked},
    )
