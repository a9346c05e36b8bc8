"""Demo data for development: residents with population records (some with ID photos from
../shared/faces so face verification can be tried), a business, e-certificates, staff accounts,
and whatever each column and platform package seeds through its own ``seed.py``.

Idempotent: running it twice changes nothing. Refuses to run outside development.
"""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.accounts.service import create_staff, find_by_phone, get_or_create_resident
from app_api.crypto import encrypt_bytes, encrypt_str
from app_api.datahub.citizen_id import make
from app_api.datahub.models import ECertificate, LegalPersonRecord, PopulationRecord
from app_api.datahub.service import id_hash
from app_api.db import session_scope
from app_api.settings import ROOT, get_settings

FACES = Path(ROOT).parent / "shared" / "faces"


@dataclass(frozen=True)
class DemoResident:
    phone: str
    name: str
    region: str
    birth: dt.date
    seq: int
    address: str
    photo: str | None = None

    @property
    def id_number(self) -> str:
        return make(self.region, self.birth, self.seq)


# Region codes: 341602 谯城区, 341621 涡阳县, 341622 蒙城县, 341623 利辛县.
RESIDENTS = [
    DemoResident(
        "13800000001",
        "张建国",
        "341602",
        dt.date(1958, 3, 12),
        13,
        "安徽省亳州市谯城区魏武大道88号",
        photo="obama_1.jpg",
    ),
    DemoResident(
        "13800000002",
        "李秀英",
        "341621",
        dt.date(1949, 8, 2),
        24,
        "安徽省亳州市涡阳县城关镇老子路16号",
        photo="biden_1.jpg",
    ),
    DemoResident(
        "13800000003", "王小明", "341622", dt.date(1992, 11, 30), 35, "安徽省亳州市蒙城县庄周路101号"
    ),
    DemoResident(
        "13800000004", "刘芳", "341623", dt.date(1988, 5, 20), 46, "安徽省亳州市利辛县城关镇人民路9号"
    ),
    DemoResident("13800000005", "陈志强", "341602", dt.date(1975, 1, 8), 57, "安徽省亳州市谯城区药都路12号"),
]

STAFF = [
    ("13900000001", ["admin"], {}),
    ("13900000002", ["finance"], {}),
    ("13900000003", ["reviewer"], {"department": "谯城区民政局"}),
    ("13900000004", ["reviewer"], {"department": "谯城区市场监督管理局"}),
    ("13900000005", ["reviewer"], {"department": "谯城区民政局", "supervisor_of": "谯城区民政局"}),
    ("13900000006", ["agent"], {"station_id": "changshu"}),
    ("13900000007", ["bank_officer"], {"institution_id": "bozhou-rcb"}),
]
DEMO_PASSWORD = "Wojia-demo-2026"


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


async def _seed_staff(session: AsyncSession) -> None:
    for phone, roles, extra in STAFF:
        if await find_by_phone(session, phone) is None:
            await create_staff(session, phone=phone, password=DEMO_PASSWORD, roles=roles, **extra)


async def run_seed(echo: Callable[[str], object] = print) -> None:
    settings = get_settings()
    if not settings.is_dev:
        raise SystemExit("demo data is for development only")
    from app_api.home.loader import discover
    from app_api.migrate import PLATFORM_PACKAGES

    async with session_scope() as s:
        added = await _seed_people(s)
        await _seed_staff(s)
    echo(f"population records: {added} new")
    modules = ["app_api.agents.seed"] + [f"{p}.seed" for p in PLATFORM_PACKAGES[1:]]
    modules += [f"{c.package}.seed" for c in discover(strict=False).columns.values()]
    for name in modules:
        if importlib.util.find_spec(name) is None:
            continue
        mod = importlib.import_module(name)
        async with session_scope() as s:
            result = await mod.seed(s)
        echo(f"{name}: {result}")
    echo("")
    echo("Demo accounts (development only; SMS codes: GET /api/v1/dev/sms?phone=...):")
    for r in RESIDENTS:
        echo(f"  resident {r.phone} {r.name}{' (has an ID photo for face checks)' if r.photo else ''}")
    for phone, roles, extra in STAFF:
        echo(f"  {'/'.join(roles):<12} {phone} password {DEMO_PASSWORD} {extra or ''}")
