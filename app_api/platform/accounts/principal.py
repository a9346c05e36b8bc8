"""The caller of a request, as seen by access checks.

Loaded per request from a Redis cache of the account (one round trip together with the check of
the token family in the revocation cache, ``accounts.revocation``), falling back to the database.
Any change to an account's roles, level or flags goes through ``invalidate()``, so a revoked role
or a raised level takes effect at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import cast

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.cache import invalidate as invalidate_local
from app_api.core.cache import local_cache
from app_api.core.redis import get_redis
from app_api.platform.accounts import revocation
from app_api.platform.accounts.models import STAFF_ROLES, Account

CACHE_TTL_S = 600


@dataclass(frozen=True, slots=True)
class Principal:
    id: str
    roles: tuple[str, ...]
    identity_level: int
    is_active: bool = True
    elderly_mode: bool = False
    department: str | None = None
    institution_id: str | None = None
    station_id: str | None = None
    supervisor_of: str | None = None

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)

    @property
    def is_staff(self) -> bool:
        return any(r in STAFF_ROLES for r in self.roles)

    @classmethod
    def of(cls, a: Account) -> Principal:
        return cls(
            id=a.id,
            roles=tuple(a.roles),
            identity_level=a.identity_level,
            is_active=a.is_active,
            elderly_mode=a.elderly_mode,
            department=a.department,
            institution_id=a.institution_id,
            station_id=a.station_id,
            supervisor_of=a.supervisor_of,
        )

    def dumps(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Principal:
        d = json.loads(raw)
        d["roles"] = tuple(d["roles"])
        return cls(**d)


def _key(account_id: str) -> str:
    return f"acct:{account_id}"


_local = local_cache("principal", ttl_s=5.0)


async def load(
    session: AsyncSession | None, account_id: str, family_id: str
) -> tuple[Principal | None, bool]:
    """Return (principal, family_revoked): from this worker's memory, else Redis, else the database."""
    key = f"{account_id}|{family_id}"
    hit = _local.get(key)
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    result = await _load(session, account_id, family_id)
    if result[0] is not None:
        _local.set(key, result)
    return result


async def _load(
    session: AsyncSession | None, account_id: str, family_id: str
) -> tuple[Principal | None, bool]:
    r = await get_redis()
    async with r.pipeline(transaction=False) as p:
        p.get(_key(account_id))
        revocation.queue_check(p, family_id)
        cached, check = await p.execute()
    revoked = await revocation.answer(check, family_id)
    if cached is not None:
        return Principal.loads(cast(bytes, cached)), revoked
    if session is None:
        from app_api.core.db import sessionmaker

        async with sessionmaker()() as s:
            account = await s.get(Account, account_id)
    else:
        account = await session.get(Account, account_id)
    if account is None:
        return None, revoked
    principal = Principal.of(account)
    await r.set(_key(account_id), principal.dumps(), ex=CACHE_TTL_S)
    return principal, revoked


async def invalidate(account_id: str) -> None:
    r = await get_redis()
    await r.delete(_key(account_id))
    await invalidate_local("principal", account_id)
