"""Attempts: their records, and the per-day counters that limit them.

Services take the request's session and flush only. A failed attempt must leave its trace (the
attempt row, the audit line, the data-center access log) although the request fails: such failures
raise :class:`AttemptRecorded`, which the router answers as problem+json *without* raising, so the
request's transaction commits the trace and nothing else.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.db import utcnow
from app_api.core.errors import AppError
from app_api.core.redis import get_redis
from identity.models import IdentityAttempt


class AttemptRecorded(Exception):
    """A failure whose record is in the session: answer ``error`` and commit."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.code)
        self.error = error


async def add_attempt(session: AsyncSession, **fields: Any) -> IdentityAttempt:
    a = IdentityAttempt(**fields)
    session.add(a)
    await session.flush()
    return a


def normalize_name(name: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name))


def day() -> str:
    """Today in China, the key of the per-day counters."""
    return utcnow().astimezone(CHINA_TZ).strftime("%Y%m%d")


def seconds_to_midnight() -> int:
    now = utcnow().astimezone(CHINA_TZ)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


async def bump(key: str) -> tuple[int, int]:
    """Increment a per-day counter; returns (count, seconds until it resets)."""
    r = await get_redis()
    ttl = seconds_to_midnight()
    async with r.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, ttl, nx=True)
        count, _ = await p.execute()
    return int(count), ttl
