"""The open platform's registry-backed scopes: ``address`` (from the population registry) and
``ecert:<type>`` (only the e-certificate types granted), read under the resident's consent, logged
in the resident's "who read my data" naming the column, and refused when not granted."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlmodel import select

from app_api.core.db import session_scope
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.models import DataAccessLog, ECertificate
from app_api.platform.datahub.service import id_hash
from tests.app_api.test_openplatform_oidc import (
    Col,
    admin,
    audited,
    auth_request,
    open_consent,
    register,
    sign_in,
    userinfo,
)
from tests.app_api.test_openplatform_stepup import person
from tests.conftest import LoginFn

__all__ = ["admin"]
ADDRESS = "安徽省亳州市谯城区魏武大道88号"
SCOPES = ["openid", "address", "ecert:driving_license", "ecert:resident_id_card"]


async def real_named(client: httpx.AsyncClient, login: LoginFn) -> tuple[dict[str, str], str]:
    """A resident who passed the real-name check (L2), with three certificates in the library."""
    resident = await login()
    name, number = await person()
    r = await client.post(
        "/api/v1/identity/real-name",
        json={"name": name, "id_number": number, "agree": True},
        headers=resident,
    )
    assert r.status_code == 200, r.text
    async with session_scope() as s:
        for t, title in (
            ("driving_license", "机动车驾驶证"),
            ("resident_id_card", "居民身份证"),
            ("household_register", "居民户口簿"),
        ):
            s.add(
                ECertificate(
                    holder_id_hash=id_hash(number),
                    cert_type=t,
                    cert_no=f"T{secrets.token_hex(8)}",
                    title=title,
                    issuer="亳州市公安局",
                    issued_on=dt.date(2020, 5, 1),
                    valid_until=dt.date(2030, 5, 1),
                    data={},
                )
            )
    return resident, number


async def reads_by(session: Any, column: Col) -> list[DataAccessLog]:
    return list(
        (await session.exec(select(DataAccessLog).where(DataAccessLog.accessor_id == column.id))).all()
    )


async def test_address_and_granted_certificates_only(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], session: Any
) -> None:
    col = await register(client, admin, scopes=SCOPES)
    resident, _ = await real_named(client, login)
    scope = "openid address ecert:driving_license"
    page = await open_consent(client, resident, auth_request(col, scope=scope))
    assert "您的户籍地址" in page.text and "您的电子证照：机动车驾驶证" in page.text
    assert "居民身份证" not in page.text  # allowed to the column, not asked for: not shown

    tokens = await sign_in(client, resident, col, scope=scope)
    info = (await userinfo(client, tokens["access_token"])).json()
    assert info["address"] == {"formatted": ADDRESS, "country": "中国"}
    # The resident holds three certificates; the column was granted one type.
    assert [c["type"] for c in info["ecertificates"]] == ["driving_license"]
    assert info["ecertificates"][0]["type_name"] == "机动车驾驶证"
    assert "phone_number" not in info and "name" not in info

    # Each read is in the resident's log, naming the column, with the consent behind it.
    rows = await reads_by(session, col)
    assert sorted(r.record_type for r in rows) == ["certificate", "population"]
    assert {(r.actor_kind, r.actor_org, r.purpose) for r in rows} == {
        ("column", (await column_name(client, admin, col)), "openplatform.userinfo")
    }
    assert all(r.consent_id for r in rows)
    log = (await client.get("/api/v1/me/data-access", headers=resident)).json()
    mine = [e for e in log["items"] if e["purpose"] == "openplatform.userinfo"]
    assert len(mine) == 2 and not any(e["by_self"] for e in mine)
    assert {e["purpose_name"] for e in mine} == {"第三方栏目读取您授权的信息（登录授权时同意）"}
    name = await column_name(client, admin, col)
    assert {e["actor"] for e in mine} == {f"第三方栏目“{name}”（经您授权）"}
    consents = (await session.exec(select(Consent).where(Consent.grantee == col.id))).all()
    assert len(consents) == 1 and set(consents[0].scopes) == {
        "population.address",
        "certificates",
        "ecert:driving_license",
    }


async def column_name(client: httpx.AsyncClient, admin: dict[str, str], col: Col) -> str:
    cols = (await client.get("/api/v1/admin/external-columns", headers=admin)).json()["columns"]
    return str(next(c["name"] for c in cols if c["id"] == col.id))


async def test_scope_the_column_was_not_granted_is_refused(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], session: Any
) -> None:
    col = await register(client, admin, scopes=["openid", "ecert:driving_license"])
    resident, _ = await real_named(client, login)
    for scope in ("openid ecert:household_register", "openid address", "openid ecert:passport"):
        req = auth_request(col, scope=scope)
        r = await open_consent(client, resident, req)
        assert r.status_code == 302, r.text
        q = parse_qs(urlsplit(r.headers["location"]).query)
        assert q["error"] == ["invalid_scope"] and "code" not in q and q["state"] == [req.params["state"]]
    refusals = await audited(session, "openplatform.authorize_refused", col.id)
    assert sum(e.data.get("reason") == "scope_not_allowed" for e in refusals) == 3
    assert await reads_by(session, col) == []
    # An admin cannot register a scope the platform does not offer.
    r = await client.post(
        "/api/v1/admin/external-columns",
        headers=admin,
        json={
            "name": "护照办理" + secrets.token_hex(3),
            "category": "交通出行",
            "url": "https://passport.example.cn/",
            "allowed_scopes": ["openid", "ecert:passport"],
            "redirect_uris": ["https://passport.example.cn/cb"],
            "operator_contact": "0558-1",
        },
    )
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")


async def test_no_registry_read_without_the_scope_or_after_revoking(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], session: Any
) -> None:
    col = await register(client, admin, scopes=SCOPES)
    resident, _ = await real_named(client, login)
    plain = await sign_in(client, resident, col, scope="openid")
    assert set((await userinfo(client, plain["access_token"])).json()) == {"sub"}
    assert await reads_by(session, col) == []

    full = await sign_in(client, resident, col, scope="openid address")
    assert "address" in (await userinfo(client, full["access_token"])).json()
    assert len(await reads_by(session, col)) == 1
    r = await client.delete(f"/api/v1/me/external-columns/{col.id}", headers=resident)
    assert r.status_code == 204
    assert (await userinfo(client, full["access_token"])).status_code == 401
    session.expire_all()
    consents = (await session.exec(select(Consent).where(Consent.grantee == col.id))).all()
    assert consents and all(c.withdrawn_at is not None for c in consents)
    assert len(await reads_by(session, col)) == 1


async def test_resident_without_real_name_gets_no_address(
    client: httpx.AsyncClient, login: LoginFn, admin: dict[str, str], session: Any
) -> None:
    col = await register(client, admin, scopes=SCOPES)
    resident = await login()
    tokens = await sign_in(client, resident, col, scope="openid address ecert:resident_id_card")
    info = (await userinfo(client, tokens["access_token"])).json()
    assert set(info) == {"sub"}
    assert await reads_by(session, col) == []
