"""Demo data for development: residents with population records (some with ID photos from
tests/fixtures/faces so face verification can be tried), a business, e-certificates, staff accounts,
and whatever each column and platform package seeds through its own ``seed.py``.

Idempotent: running it twice changes nothing. Refuses to run outside development.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_bytes, encrypt_str
from app_api.core.db import session_scope
from app_api.core.settings import ROOT, get_settings
from app_api.platform.accounts.service import create_staff, find_by_phone, get_or_create_resident
from app_api.platform.datahub.models import ECertificate, LegalPersonRecord, PopulationRecord
from app_api.platform.datahub.service import id_hash
from app_api.platform.demo import DEMO_PASSWORD, RESIDENTS, STAFF, DemoResident
from app_api.wiring.components import components

FACES = Path(ROOT) / "tests" / "fixtures" / "faces"


async def _seed_people(session: AsyncSession) -> int:
    added = 0
    for r in RESIDENTS:
        h = id_hash(r.id_number)
        if (await session.exec(select(PopulationRecord).where(PopulationRecord.id_number_hash == h))).first():
            continue
        photo = (FACES / r.photo).read_bytes() if r.photo and (FACES / r.photo).exists() else None
        session.add(
            PopulationRecord(
                id_number_hash=h,
                id_number_enc=encrypt_str(r.id_number, aad="id_number"),
                name_enc=encrypt_str(r.name, aad="name"),
                gender="男" if r.seq % 2 else "女",
                birth_date=r.birth,
                address_enc=encrypt_str(r.address, aad="address"),
                household="亳州市" + r.address[6:9],
                marital_status="已婚" if r.birth.year < 1990 else "未婚",
                photo_enc=encrypt_bytes(photo, aad="id_photo") if photo else None,
            )
        )
        session.add(
            ECertificate(
                holder_id_hash=h,
                cert_type="resident_id_card",
                cert_no=f"ID{r.id_number[-8:]}",
                title="居民身份证",
                issuer="亳州市公安局",
                issued_on=dt.date(2016, 6, 1),
                valid_until=dt.date(2036, 6, 1),
                data={"name": r.name},
            )
        )
        session.add(
            ECertificate(
                holder_id_hash=h,
                cert_type="household_register",
                cert_no=f"HK{r.id_number[-8:]}",
                title="居民户口簿",
                issuer="亳州市公安局",
                issued_on=dt.date(2010, 1, 1),
                data={"household": "亳州市" + r.address[6:9]},
            )
        )
        await get_or_create_resident(session, phone=r.phone)
        added += 1
    owner = RESIDENTS[4]
    if not (
        await session.exec(select(LegalPersonRecord).where(LegalPersonRecord.uscc == "92341602MA2T0XYZ1K"))
    ).first():
        session.add(
            LegalPersonRecord(
                uscc="92341602MA2T0XYZ1K",
                name="亳州市谯城区志强中药材经营部",
                kind="个体工商户",
                legal_rep_id_hash=id_hash(owner.id_number),
                legal_rep_name_enc=encrypt_str(owner.name, aad="name"),
                address="安徽省亳州市谯城区中药材专业市场A区12号",
                business_scope="中药材（初级农产品）销售",
                registered_capital_fen=10_000_000,
                established_on=dt.date(2019, 4, 1),
            )
        )
    await session.flush()
    return added


async def _with_photo(session: AsyncSession) -> set[str]:
    """The ID-number hashes of the demo residents whose population record holds an ID photo."""
    hashes = [id_hash(r.id_number) for r in RESIDENTS]
    rows = await session.exec(
        select(PopulationRecord.id_number_hash).where(
            col(PopulationRecord.id_number_hash).in_(hashes), col(PopulationRecord.photo_enc).is_not(None)
        )
    )
    return set(rows.all())


def _photo_note(r: DemoResident, with_photo: set[str]) -> str:
    """What the banner says about a resident's ID photo: what is stored, not what was meant."""
    if id_hash(r.id_number) in with_photo:
        return " (has an ID photo for face checks)"
    if not r.photo:
        return ""
    if not (FACES / r.photo).exists():
        return f" (no ID photo: {FACES / r.photo} is missing, so face checks cannot pass)"
    return " (no ID photo: the record was seeded earlier without one)"


async def _seed_staff(session: AsyncSession) -> None:
    for phone, roles, extra in STAFF:
        if await find_by_phone(session, phone) is None:
            await create_staff(session, phone=phone, password=DEMO_PASSWORD, roles=roles, **extra)


async def run_seed(echo: Callable[[str], object] = print) -> None:
    settings = get_settings()
    if not settings.is_dev:
        raise SystemExit("demo data is for development only")
    from app_api.platform.home.loader import discover

    async with session_scope() as s:
        added = await _seed_people(s)
        await _seed_staff(s)
    echo(f"population records: {added} new")
    seeds: list[tuple[str, Callable[[AsyncSession], Awaitable[Any]]]] = [
        (c.name, c.seed) for c in components() if c.seed is not None
    ]
    for column in discover(strict=False).columns.values():
        mod = column.submodule("seed")
        if mod is not None:
            seeds.append((column.package, mod.seed))
    for name, seed in seeds:
        async with session_scope() as s:
            result = await seed(s)
        echo(f"{name}: {result}")
    echo("")
    echo("Demo accounts (development only; SMS codes: GET /api/v1/dev/sms?phone=...):")
    async with session_scope() as s:
        with_photo = await _with_photo(s)
    for r in RESIDENTS:
        echo(f"  resident {r.phone} {r.name}{_photo_note(r, with_photo)}")
    for phone, roles, extra in STAFF:
        echo(f"  {'/'.join(roles):<12} {phone} password {DEMO_PASSWORD} {extra or ''}")
