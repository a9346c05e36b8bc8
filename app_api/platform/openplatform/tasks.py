"""Housekeeping of the sign-in tables: tickets, codes and tokens are kept a day after they expired."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import col

from app_api.core.db import session_scope, utcnow
from app_api.core.jobs import broker
from app_api.platform.openplatform.models import AuthCode, AuthTicket, IssuedToken

# Past expiry a row only answers "already used" / "revoked" with a less precise "unknown": a day
# keeps the precise answer (and the reused-code revocation) for late replays.
KEEP = dt.timedelta(days=1)


async def purge_expired(*, now: dt.datetime | None = None) -> dict[str, int]:
    cutoff = (now or utcnow()) - KEEP
    counts: dict[str, int] = {}
    async with session_scope() as session:
        for name, table, expires in (
            ("tickets", AuthTicket, AuthTicket.expires_at),
            ("codes", AuthCode, AuthCode.expires_at),
            ("tokens", IssuedToken, IssuedToken.expires_at),
        ):
            res = await session.exec(sa.delete(table).where(col(expires) < cutoff))
            counts[name] = int(res.rowcount or 0)
    return counts


@broker.task(task_name="openplatform.purge_expired", schedule=[{"cron": "17 3 * * *"}])
async def purge() -> dict[str, int]:
    """Delete sign-in tickets, codes and access-token records expired more than a day ago (daily)."""
    return await purge_expired()
