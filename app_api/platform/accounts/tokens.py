"""Access tokens (JWT, HS256, 15 minutes) and rotating refresh tokens (opaque, stored hashed)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from functools import lru_cache

import jwt
import sqlalchemy as sa
from jwt.algorithms import HMACAlgorithm
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import new_id, utcnow
from app_api.core.settings import get_settings
from app_api.platform import audit
from app_api.platform.accounts import revocation
from app_api.platform.accounts.errors import RefreshRaced, RefreshReused, TokenExpired, TokenInvalid
from app_api.platform.accounts.models import RefreshToken

ALGORITHM = "HS256"
ISSUER = "wojia"


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = 900


@dataclass(frozen=True)
class AccessClaims:
    account_id: str
    family_id: str


class _PreparedHS256(HMACAlgorithm):
    """HS256 with the configured secret checked and encoded once.

    PyJWT prepares the key on every call (it refuses PEM, SSH, DER and JWK-shaped secrets, which
    costs a quarter of a decode); the secret does not change between requests, so it is prepared
    here once. Any other key still goes through the full preparation.
    """

    def __init__(self, secret: str) -> None:
        super().__init__(HMACAlgorithm.SHA256)
        self._secret = secret
        self._prepared = super().prepare_key(secret)

    def prepare_key(self, key: str | bytes) -> bytes:
        if key == self._secret:
            return self._prepared
        return super().prepare_key(key)


class _Codec(jwt.PyJWT):
    """PyJWT's encode and decode (same tokens, same claim checks, same errors) over a signature
    layer that knows only HS256, with the key prepared once."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret
        jws = jwt.PyJWS(algorithms=[ALGORITHM])
        jws.unregister_algorithm(ALGORITHM)
        jws.register_algorithm(ALGORITHM, _PreparedHS256(secret))
        self._jws = jws


@lru_cache(maxsize=4)
def _codec(secret: str) -> _Codec:
    return _Codec(secret)


def _current_codec() -> _Codec:
    return _codec(get_settings().secret_key.get_secret_value())


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def make_access(account_id: str, family_id: str) -> str:
    s = get_settings()
    now = utcnow()
    claims = {
        "sub": account_id,
        "fam": family_id,
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(seconds=s.access_token_ttl_s)).timestamp()),
        "jti": new_id(),
    }
    codec = _current_codec()
    return codec.encode(claims, codec.secret, algorithm=ALGORITHM)


def decode_access(token: str, *, allow_expired: bool = False) -> AccessClaims:
    """Verify an access token. ``allow_expired`` still checks the signature (logout of a stale page)."""
    codec = _current_codec()
    try:
        claims = codec.decode(
            token,
            codec.secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["sub", "exp", "fam", "iss"], "verify_exp": not allow_expired},
        )
    except jwt.ExpiredSignatureError as e:
        raise TokenExpired() from e
    except jwt.PyJWTError as e:
        raise TokenInvalid() from e
    return AccessClaims(account_id=str(claims["sub"]), family_id=str(claims["fam"]))


async def issue_pair(session: AsyncSession, account_id: str, family_id: str | None = None) -> TokenPair:
    s = get_settings()
    family_id = family_id or new_id()
    raw = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            account_id=account_id,
            family_id=family_id,
            token_hash=_hash(raw),
            expires_at=utcnow() + dt.timedelta(seconds=s.refresh_token_ttl_s),
        )
    )
    await session.flush()
    return TokenPair(make_access(account_id, family_id), raw, expires_in=s.access_token_ttl_s)


async def refresh_owner(session: AsyncSession, raw: str) -> AccessClaims | None:
    """Whose family a refresh token belongs to (spent or not), without spending it."""
    token = (await session.exec(select(RefreshToken).where(RefreshToken.token_hash == _hash(raw)))).first()
    return None if token is None else AccessClaims(account_id=token.account_id, family_id=token.family_id)


async def revoke_family(session: AsyncSession, family_id: str, account_id: str, *, reason: str) -> None:
    """Revoke every token of a login: its refresh tokens, and its access tokens at once.

    Recorded in ``app_token_revocation`` in the caller's transaction (the durable record) and put
    into the Redis cache that access checks read (``accounts.revocation``).
    """
    await session.exec(
        sa.update(RefreshToken)
        .where(col(RefreshToken.family_id) == family_id, col(RefreshToken.revoked_at).is_(None))
        .values(revoked_at=utcnow())
    )
    await revocation.revoke(session, family_id=family_id, account_id=account_id, reason=reason)


async def _commit_revocation(session: AsyncSession, family_id: str) -> None:
    """Commit a revocation that must survive the error response, then refresh the cache after it."""
    await session.commit()
    await revocation.remember(family_id, utcnow())


async def log_out(session: AsyncSession, claims: AccessClaims) -> None:
    """End one login (app or console): revoke its token family and record the logout."""
    await revoke_family(session, claims.family_id, claims.account_id, reason="logout")
    await audit.record(
        session,
        action="auth.logout",
        actor_id=claims.account_id,
        subject_type="account",
        subject_id=claims.account_id,
    )


async def rotate(session: AsyncSession, raw: str, *, race_grace_s: int = 0) -> tuple[TokenPair, str]:
    """Spend a refresh token and issue the next pair of its family; return (pair, account_id).

    ``race_grace_s``: a token spent less than this long ago is refused with ``RefreshRaced`` and the
    family kept. Browser tabs share one cookie jar, so two tabs refreshing together present the same
    token; the loser picks up the winner's cookies. A replay after the grace still revokes the family.
    API clients keep the strict default (0): they hold their own token and refresh one at a time.
    """
    token = (await session.exec(select(RefreshToken).where(RefreshToken.token_hash == _hash(raw)))).first()
    if token is None:
        raise TokenInvalid()
    if token.revoked_at is None and await revocation.is_revoked(session, token.family_id):
        # Issued by a refresh that raced the family's revocation: the family is what counts.
        raise TokenInvalid()
    if (
        race_grace_s > 0
        and token.used_at is not None
        and token.revoked_at is None
        and utcnow() - token.used_at < dt.timedelta(seconds=race_grace_s)
    ):
        raise RefreshRaced()
    if token.used_at is not None or token.revoked_at is not None:
        if token.used_at is not None and token.revoked_at is None:
            # A spent token presented again: someone holds a copy. Revoke the whole family.
            await revoke_family(session, token.family_id, token.account_id, reason="refresh_reused")
            await audit.record(
                session,
                action="auth.refresh_reused",
                actor_id=token.account_id,
                subject_type="token_family",
                subject_id=token.family_id,
            )
            # The revocation must survive the error response, so it is committed here.
            await _commit_revocation(session, token.family_id)
            raise RefreshReused()
        raise TokenInvalid()
    if token.expires_at <= utcnow():
        raise TokenExpired()
    # Compare-and-set, so two concurrent refreshes with one token cannot both succeed.
    res = await session.exec(
        sa.update(RefreshToken)
        .where(col(RefreshToken.id) == token.id, col(RefreshToken.used_at).is_(None))
        .values(used_at=utcnow())
    )
    if res.rowcount != 1:
        if race_grace_s > 0:
            raise RefreshRaced()  # another tab spent it between our read and our write
        await revoke_family(session, token.family_id, token.account_id, reason="refresh_reused")
        await _commit_revocation(session, token.family_id)
        raise RefreshReused()
    return await issue_pair(session, token.account_id, token.family_id), token.account_id
