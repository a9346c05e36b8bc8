"""Helpers for the government services tests: the seeded catalogue, real-named residents with
records in the data center, department reviewers and supervisors."""

from __future__ import annotations

import datetime as dt
import io
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.citizens import new_id_number
from tests.conftest import LoginFn, new_phone

API = "/api/v1/columns/gov_services"
# Where the app mounts the column's development sandboxes (``/postal``, ``/s3``).
SANDBOX = "/sandbox/gov_services"


@dataclass
class Resident:
    headers: dict[str, str]
    account_id: str
    phone: str
    id_number: str
    name: str


@pytest.fixture(scope="session")
async def gov_catalogue(app: Any) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store

    async with session_scope() as s:
        await catalogue_store.seed(s)


def gov_sandbox(app: Any) -> Any:
    """The column's development sandbox app as mounted (``.state.s3.objects``: what S3 holds)."""
    from starlette.routing import Mount

    return next(r.app for r in app.routes if isinstance(r, Mount) and r.path == SANDBOX)


async def make_resident(
    client: httpx.AsyncClient,
    login: LoginFn,
    *,
    level: int = 3,
    certs: tuple[tuple[str, str], ...] = (
        ("resident_id_card", "居民身份证"),
        ("household_register", "居民户口簿"),
    ),
    photo: bool = False,
) -> Resident:
    """A resident who passed real-name checks, with a population record and e-certificates."""
    from app_api.core.crypto import encrypt_bytes, encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.principal import invalidate
    from app_api.platform.datahub.models import ECertificate, PopulationRecord
    from app_api.platform.datahub.service import id_hash

    phone = new_phone()
    headers = await login(phone, level=level)
    me = (await client.get("/api/v1/me", headers=headers)).json()
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=secrets.randbelow(365 * 20))
    id_number = new_id_number("341602", birth)
    name = "测试" + secrets.choice("明华强丽芳军")
    async with session_scope() as s:
        account = await s.get(Account, me["id"])
        assert account is not None
        account.real_name_enc = encrypt_str(name, aad="name")
        account.id_number_enc = encrypt_str(id_number, aad="id_number")
        account.id_number_hash = id_hash(id_number)
        s.add(account)
        s.add(
            PopulationRecord(
                id_number_hash=id_hash(id_number),
                id_number_enc=encrypt_str(id_number, aad="id_number"),
                name_enc=encrypt_str(name, aad="name"),
                gender="男",
                birth_date=birth,
                address_enc=encrypt_str("安徽省亳州市谯城区魏武大道88号", aad="address"),
                household="亳州市谯城区",
                marital_status="已婚",
                photo_enc=encrypt_bytes(jpeg(), aad="id_photo") if photo else None,
            )
        )
        for code, title in certs:
            s.add(
                ECertificate(
                    holder_id_hash=id_hash(id_number),
                    cert_type=code,
                    cert_no=f"T{uuid.uuid4().hex[:16].upper()}",
                    title=title,
                    issuer="亳州市公安局",
                    issued_on=dt.date(2016, 6, 1),
                    data={},
                )
            )
    await invalidate(me["id"])
    return Resident(headers, me["id"], phone, id_number, name)


async def make_staff(
    client: httpx.AsyncClient, login: LoginFn, *, department: str, supervisor: bool = False
) -> tuple[dict[str, str], str]:
    extra = {"supervisor_of": department} if supervisor else {}
    headers = await login(new_phone(), roles=["reviewer"], department=department, **extra)
    me = (await client.get("/api/v1/me", headers=headers)).json()
    return headers, me["id"]


def jpeg(size: tuple[int, int] = (40, 50)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (0, 0, 255)).save(buf, format="PNG")
    return buf.getvalue()


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def ofd(with_root: bool = True) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        if with_root:
            z.writestr(
                "OFD.xml",
                '<?xml version="1.0" encoding="UTF-8"?><ofd:OFD xmlns:ofd="http://www.ofdspec.org/2016"/>',
            )
        z.writestr("Doc_0/Document.xml", "<Document/>")
    return buf.getvalue()


async def new_application(client: httpx.AsyncClient, r: Resident, code: str) -> dict[str, Any]:
    resp = await client.post(
        f"{API}/applications", json={"item_code": code, "client_key": uuid.uuid4().hex}, headers=r.headers
    )
    assert resp.status_code == 201, resp.text
    return resp.json()
