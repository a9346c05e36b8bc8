"""Residents of a chosen age and household registration for the condition-rule and instant-approval
tests (the shared ``make_resident`` draws a random birth date between 1940 and 1960)."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

import httpx

from tests.citizens import new_id_number
from tests.columns.gov_services.conftest import API, Resident, jpeg
from tests.conftest import LoginFn, new_phone

CERTS = (("resident_id_card", "居民身份证"), ("household_register", "居民户口簿"))


def born_years_ago(years: int) -> dt.date:
    """A birth date that makes someone exactly ``years`` old today (China date)."""
    from app_api.core.clock import china_today

    today = china_today()
    # Day 28 at most, so the date exists in every month; the birthday this year is 40 days ahead.
    return today.replace(year=today.year - years - 1, day=min(today.day, 28)) + dt.timedelta(days=40)


async def resident_born(
    client: httpx.AsyncClient,
    login: LoginFn,
    *,
    birth: dt.date,
    household: str = "亳州市谯城区",
    address: str = "安徽省亳州市谯城区魏武大道88号",
    certs: tuple[tuple[str, str], ...] = CERTS,
) -> Resident:
    from app_api.core.crypto import encrypt_bytes, encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.principal import invalidate
    from app_api.platform.datahub.models import ECertificate, PopulationRecord
    from app_api.platform.datahub.service import id_hash

    phone = new_phone()
    headers = await login(phone, level=3)
    me = (await client.get("/api/v1/me", headers=headers)).json()
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
                gender="女",
                birth_date=birth,
                address_enc=encrypt_str(address, aad="address"),
                household=household,
                marital_status="已婚",
                photo_enc=encrypt_bytes(jpeg(), aad="id_photo"),
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


async def prefilled_draft(client: httpx.AsyncClient, r: Resident, code: str) -> str:
    """A draft of ``code`` filled from the population record and the e-certificate library."""
    resp = await client.post(
        f"{API}/applications", json={"item_code": code, "client_key": uuid.uuid4().hex}, headers=r.headers
    )
    assert resp.status_code == 201, resp.text
    app_id = str(resp.json()["id"])
    resp = await client.post(
        f"{API}/applications/{app_id}/prefill", json={"groups": ["person", "certificate"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    return app_id
