"""The migration that made revocations durable records the families revoked before it (they were in Redis).

Runs the migrations on a scratch database of the configured backend (SQLite file, or a scratch
PostgreSQL database next to the test one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.models import Account, RefreshToken, TokenRevocation
from app_api.wiring.migrate import alembic_config
from tests.conftest import _PG_BASE, _PG_DB, _pg

BEFORE = "2c28626de7af"
REVISION = "aff42c27f7fc"


@pytest.fixture
def scratch_url() -> Iterator[str]:
    if _PG_DB is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite+aiosqlite:///{Path(tmp) / 'migration.db'}"
        return
    name = f"wojia_mig_{secrets.token_hex(4)}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield _PG_BASE.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _seed(url: str) -> None:
    now = dt.datetime.now(dt.UTC)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(Account.__table__).values(  # type: ignore[attr-defined]
                id="acct1",
                phone_hash="h1",
                phone_enc=b"x",
                roles=["resident"],
                identity_level=1,
                elderly_mode=False,
                is_active=True,
                created_at=now,
            )
        )
        rows = [
            # A logged-out login (two spent-or-revoked tokens), and a live one.
            ("t1", "fam_out", now - dt.timedelta(minutes=20), now - dt.timedelta(minutes=5)),
            ("t2", "fam_out", None, now - dt.timedelta(minutes=4)),
            ("t3", "fam_live", None, None),
        ]
        for tid, fam, used, revoked in rows:
            await conn.execute(
                sa.insert(RefreshToken.__table__).values(  # type: ignore[attr-defined]
                    id=tid,
                    account_id="acct1",
                    family_id=fam,
                    token_hash=f"hash-{tid}",
                    issued_at=now - dt.timedelta(hours=1),
                    expires_at=now + dt.timedelta(days=1),
                    used_at=used,
                    revoked_at=revoked,
                )
            )
    await engine.dispose()


async def _revocations(url: str) -> list[TokenRevocation]:
    engine = create_async_engine(url)
    async with AsyncSession(engine) as s:
        rows = list((await s.exec(select(TokenRevocation))).all())
    await engine.dispose()
    return rows


def test_upgrade_records_families_revoked_before_it_and_downgrades(scratch_url: str) -> None:
    cfg = alembic_config(scratch_url)
    command.upgrade(cfg, BEFORE)
    asyncio.run(_seed(scratch_url))
    command.upgrade(cfg, REVISION)

    rows = asyncio.run(_revocations(scratch_url))
    assert [(r.family_id, r.account_id, r.reason) for r in rows] == [("fam_out", "acct1", "before_upgrade")]
    age = dt.datetime.now(dt.UTC) - rows[0].revoked_at
    assert dt.timedelta(minutes=3) < age < dt.timedelta(minutes=5)  # the latest revocation of the family

    command.downgrade(cfg, BEFORE)
    command.upgrade(cfg, REVISION)  # and back up: the backfill runs again cleanly
    assert len(asyncio.run(_revocations(scratch_url))) == 1
