"""Signing keys for ID and access tokens: ES256, the private half encrypted with the data keys.

One key signs at a time. ``rotate`` makes a new one and retires the old; a retired key stays in
JWKS until every token it signed has expired (``TOKEN_TTL``), so a column holding a fresh token can
still verify it after a rotation.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str
from app_api.core.db import lock_for_writing, utcnow
from app_api.platform import audit
from app_api.platform.openplatform.models import SigningKey

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, KeySet

ALG = "ES256"
# Access and ID tokens live this long; a retired key is published this long (plus a margin) after it.
TOKEN_TTL = dt.timedelta(minutes=10)
_PUBLISH_MARGIN = dt.timedelta(minutes=5)


def _aad(kid: str) -> str:
    return f"oidc_signing_key:{kid}"


async def _create(session: AsyncSession) -> SigningKey:
    # joserfc loads with the first token, not in every api worker (issue 19).
    from joserfc.jwk import ECKey

    kid = utcnow().strftime("%Y%m%d") + "-" + secrets.token_hex(4)
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": ALG, "use": "sig"}, private=True)
    row = SigningKey(
        kid=kid,
        alg=ALG,
        private_enc=encrypt_str(json.dumps(key.as_dict(private=True)), aad=_aad(kid)),
        public_jwk={k: str(v) for k, v in key.as_dict(private=False).items()},
    )
    session.add(row)
    await session.flush()
    return row


async def signing_key(session: AsyncSession) -> tuple[str, ECKey]:
    """The key that signs now (made on first use)."""
    row = (
        await session.exec(
            select(SigningKey)
            .where(col(SigningKey.retired_at).is_(None))
            .order_by(col(SigningKey.created_at).desc())
        )
    ).first()
    if row is None:
        await lock_for_writing(session, "oidc_signing_key")
        row = (await session.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None)))).first()
        if row is None:
            row = await _create(session)
    from joserfc.jwk import ECKey

    data = json.loads(decrypt_str(row.private_enc, aad=_aad(row.kid)))
    return row.kid, ECKey.import_key(data)


async def rotate(session: AsyncSession, *, actor_id: str | None) -> str:
    """Retire the signing key and make a new one; returns the new kid. Audited."""
    await lock_for_writing(session, "oidc_signing_key")
    now = utcnow()
    await session.exec(
        sa.update(SigningKey).where(col(SigningKey.retired_at).is_(None)).values(retired_at=now)
    )
    row = await _create(session)
    await audit.record(
        session,
        action="openplatform.key_rotated",
        actor_id=actor_id,
        subject_type="oidc_key",
        subject_id=row.kid,
    )
    return row.kid


async def published(session: AsyncSession) -> list[dict[str, Any]]:
    """The public keys a column may see a token signed with: the current one and the recently retired."""
    cutoff = utcnow() - TOKEN_TTL - _PUBLISH_MARGIN
    rows = (
        await session.exec(
            select(SigningKey)
            .where(sa.or_(col(SigningKey.retired_at).is_(None), col(SigningKey.retired_at) > cutoff))
            .order_by(col(SigningKey.created_at).desc())
        )
    ).all()
    return [dict(r.public_jwk) for r in rows]


async def verification_keys(session: AsyncSession) -> KeySet:
    from joserfc.jwk import KeySet

    return KeySet.import_key_set({"keys": await published(session)})
