"""Prefill attaches only certificates the library says are usable: a revoked one (or one still being
issued) is left for the resident to supply another way, and a valid newer one wins."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
from sqlmodel import select

from tests.columns.gov_services.conftest import API
from tests.columns.gov_services.rules_helpers import born_years_ago, prefilled_draft, resident_born
from tests.conftest import LoginFn

NO_RECORD = "BZ-GA-001"  # 无犯罪记录证明: its identity-card material is an e-certificate
ID_MATERIAL = "申请人居民身份证"


async def _revoke_all(id_number: str, cert_type: str) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.datahub.models import ECertificate
    from app_api.platform.datahub.service import id_hash

    async with session_scope() as s:
        rows = (
            await s.exec(
                select(ECertificate).where(
                    ECertificate.holder_id_hash == id_hash(id_number), ECertificate.cert_type == cert_type
                )
            )
        ).all()
        assert rows
        for row in rows:
            row.revoked_at, row.revoke_reason = dt.datetime.now(dt.UTC), "证件已挂失"
            s.add(row)


async def test_a_revoked_certificate_is_not_attached_and_the_resident_is_told_it_is_missing(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(40))
    await _revoke_all(r.id_number, "resident_id_card")
    app_id = await prefilled_draft(client, r, NO_RECORD)
    app = (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
    assert ID_MATERIAL not in app["form"]["ecerts"]
    eligibility = (
        await client.get(
            f"{API}/items/{NO_RECORD}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    assert eligibility["instant_possible"] is False and eligibility["can_submit"] is False
    [id_card] = [c for c in eligibility["conditions"] if c["id"] == "id_card"]
    assert id_card["status"] == "unmet" and id_card["reason"] == "电子证照库中没有您的居民身份证"
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 422 and resp.json()["missing"] == [ID_MATERIAL]


async def test_a_valid_certificate_is_attached_beside_a_revoked_one(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.datahub.models import ECertificate
    from app_api.platform.datahub.service import id_hash

    r = await resident_born(client, login, birth=born_years_ago(40))
    await _revoke_all(r.id_number, "resident_id_card")
    fresh = f"T{uuid.uuid4().hex[:16].upper()}"
    async with session_scope() as s:
        s.add(
            ECertificate(
                holder_id_hash=id_hash(r.id_number),
                cert_type="resident_id_card",
                cert_no=fresh,
                title="居民身份证",
                issuer="亳州市公安局",
                issued_on=dt.date(2024, 3, 1),
                data={},
            )
        )
    app_id = await prefilled_draft(client, r, NO_RECORD)
    app = (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
    assert app["form"]["ecerts"][ID_MATERIAL]["cert_no"] == fresh


def test_only_valid_unexpired_certificates_are_usable_newest_first() -> None:
    from app_api.platform.datahub.service import Certificate
    from columns.gov_services.prefill import usable_certificates

    def cert(no: str, status: str, issued: dt.date, until: dt.date | None = None) -> Certificate:
        return Certificate(
            id=no,
            cert_type="resident_id_card",
            cert_no=no,
            title="居民身份证",
            issuer="亳州市公安局",
            issued_on=issued,
            valid_until=until,
            data={},
            status=status,
        )

    today = dt.date(2026, 6, 1)
    certs = [
        cert("OLD", "valid", dt.date(2010, 1, 1)),
        cert("PENDING", "pending", dt.date(2026, 5, 31)),
        cert("REVOKED", "revoked", dt.date(2025, 1, 1)),
        cert("EXPIRED", "valid", dt.date(2016, 1, 1), until=dt.date(2026, 5, 31)),
        cert("NEW", "valid", dt.date(2020, 1, 1), until=dt.date(2026, 6, 1)),
    ]
    assert [c.cert_no for c in usable_certificates(certs, today)] == ["NEW", "OLD"]
