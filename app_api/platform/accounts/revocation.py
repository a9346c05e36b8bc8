"""Revoked token families: the database (``app_token_revocation``) is the record, Redis a cache of it.

Every authenticated request asks whether its token's family is revoked, so the answer must not
cost a database query. The cache is one Redis sorted set, ``auth:revoked``: member = family id,
score = when it was revoked (epoch seconds), plus a marker member ``__complete__`` (score +inf)
that says "this set holds every revocation an unexpired access token could belong to".

Why a complete set with a marker, and not a per-family "not revoked" cache: almost every check is
for a family that was never revoked, and with per-family negatives every active login would cost a
query each time its negative entry expires, and a wiped Redis would cost one query per login. With
the set, a check is one ``ZMSCORE`` (sent in the same round trip as the principal lookup); only a
missing marker costs a query, and one query rebuilds the answer for every login at once.

- The marker lives inside the set: a FLUSHDB, a restart without persistence or an eviction takes
  the marker with the contents, so the set can never be "complete" and empty of what it held.
- Rebuild (marker missing): read the revocations younger than the longest access token (plus a
  margin) from the database, ZADD them with the marker, and set the key's TTL
  (``REBUILD_EVERY_S``), so the set is trimmed and re-read from the database regularly; a write
  the cache missed (Redis failing after the database committed) is repaired by then. A rebuild
  only adds, never deletes, so a revocation added while it ran is kept.
- A revocation is added at once (this request's own transaction is not yet committed, but the
  caller asked to be logged out now), and again after its commit: a rebuild that read the database
  just before the commit would otherwise complete the set without it.
- Older revocations need no cache entry: their access tokens have expired, and refresh tokens are
  checked against the database (``is_revoked``) on every refresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.cache import invalidate as invalidate_local
from app_api.core.db import on_commit, sessionmaker, utcnow
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform.accounts.models import TokenRevocation

KEY = "auth:revoked"
COMPLETE = "__complete__"
# The set is rebuilt from the database at least this often (its TTL, set by each rebuild).
REBUILD_EVERY_S = 600
# Beyond the access-token lifetime: clock skew between workers, and a refresh that raced a logout
# (an access token issued just after the revocation committed).
MARGIN_S = 300

_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _window_s() -> int:
    return get_settings().access_token_ttl_s + MARGIN_S


async def revoke(session: AsyncSession, *, family_id: str, account_id: str, reason: str) -> None:
    """Record the family as revoked in this session's transaction and in the cache (idempotent)."""
    now = utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.exec(
        insert(TokenRevocation)
        .values(family_id=family_id, account_id=account_id, reason=reason, revoked_at=now)
        .on_conflict_do_nothing(index_elements=["family_id"])
    )
    await remember(family_id, now)

    async def _after_commit() -> None:
        await remember(family_id, now)

    on_commit(session, _after_commit)


async def remember(family_id: str, revoked_at: dt.datetime) -> None:
    """Put a revocation into the cache, drop revocations too old to matter, and tell every worker."""
    cutoff = utcnow().timestamp() - _window_s()
    r = await get_redis()
    async with r.pipeline(transaction=True) as p:
        # No EXPIRE here: the TTL set by the last rebuild stays, so the set is still re-read from
        # the database on schedule. On a wiped Redis this creates the set without the marker.
        p.zadd(KEY, {family_id: revoked_at.timestamp()})
        p.zremrangebyscore(KEY, "-inf", cutoff)
        await p.execute()
    await invalidate_local("principal", family_id)


def queue_check(pipe: Any, family_id: str) -> None:
    """Add the check to a Redis pipeline; hand its result to ``answer``."""
    pipe.zmscore(KEY, [family_id, COMPLETE])


async def answer(result: list[float | None], family_id: str) -> bool:
    """Whether the family is revoked, from the cache, rebuilding it first when it is not complete."""
    score, complete = result
    if complete is not None:
        return score is not None
    return await _rebuild_and_check(family_id)


async def is_revoked_cached(family_id: str) -> bool:
    r = await get_redis()
    return await answer(await r.zmscore(KEY, [family_id, COMPLETE]), family_id)


async def _rebuild_and_check(family_id: str) -> bool:
    loop = asyncio.get_running_loop()
    lock = _locks.setdefault(loop, asyncio.Lock())
    r = await get_redis()
    async with lock:  # one rebuild per process at a time; the others wait and read its result
        score, complete = await r.zmscore(KEY, [family_id, COMPLETE])
        if complete is not None:
            return score is not None
        since = utcnow() - dt.timedelta(seconds=_window_s())
        async with sessionmaker()() as s:
            rows = (
                await s.exec(
                    select(TokenRevocation.family_id, TokenRevocation.revoked_at).where(
                        col(TokenRevocation.revoked_at) >= since
                    )
                )
            ).all()
        members: dict[str, float] = {fid: at.timestamp() for fid, at in rows}
        members[COMPLETE] = float("inf")
        async with r.pipeline(transaction=True) as p:
            p.zadd(KEY, members)
            p.zremrangebyscore(KEY, "-inf", f"({since.timestamp()}")
            p.expire(KEY, REBUILD_EVERY_S)
            p.zscore(KEY, family_id)
            *_, score = await p.execute()
        return score is not None


async def is_revoked(session: AsyncSession, family_id: str) -> bool:
    """From the database: for refresh tokens, which outlive the cache's window."""
    return await session.get(TokenRevocation, family_id) is not None
