"""Instant approval (秒批): approved by the rules within the submitting request with its
e-certificate issued, the rules that passed recorded, a sampled share in the reviewers' queue, and a
revocation a reviewer can make within the window only, recorded in the audit chain."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from tests.columns.gov_services.conftest import API, Resident, make_staff
from tests.columns.gov_services.rules_helpers import born_years_ago, prefilled_draft, resident_born
from tests.columns.utilities.utilities_helpers import wait_until
from tests.conftest import LoginFn

NO_RECORD = "BZ-GA-001"  # 无犯罪记录证明: instant approval, all materials from the records
POLICE = "谯城区公安分局"


@pytest.fixture
def sample_all() -> Iterator[None]:
    """Every instant approval is sampled (the setting ``WOJIA_COLUMN_GOV_SERVICES_INSTANT_SAMPLE_PERCENT``)."""
    from columns.gov_services.config import get_config

    before = get_config().instant_sample_percent
    get_config().instant_sample_percent = 100
    yield
    get_config().instant_sample_percent = before


@pytest.fixture
def sample_none() -> Iterator[None]:
    from columns.gov_services.config import get_config

    before = get_config().instant_sample_percent
    get_config().instant_sample_percent = 0
    yield
    get_config().instant_sample_percent = before


async def _instantly_approved(client: httpx.AsyncClient, login: LoginFn) -> tuple[Resident, dict[str, Any]]:
    r = await resident_born(client, login, birth=born_years_ago(41))
    app_id = await prefilled_draft(client, r, NO_RECORD)
    eligibility = (
        await client.get(
            f"{API}/items/{NO_RECORD}/eligibility", params={"application_id": app_id}, headers=r.headers
        )
    ).json()
    assert eligibility["instant_possible"] is True and eligibility["manual"] == []
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    return r, resp.json()


async def test_an_instant_approval_issues_the_certificate_within_the_request(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, sample_none: None
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.audit.models import AuditEvent
    from app_api.platform.datahub.models import ECertificate
    from app_api.platform.datahub.service import id_hash
    from columns.gov_services.models import Event

    reviewer, _ = await make_staff(client, login, department=POLICE)
    owner, done = await _instantly_approved(client, login)
    id_number = owner.id_number
    assert done["status"] == "approved" and done["instant"] is True and done["instant_sampled"] is False
    assert done["decided_at"] and done["result_cert_no"]
    assert {c["id"]: c["status"] for c in done["conditions"]} == {"id_card": "met", "hukou": "met"}
    assert [(e["kind"], e["actor_role"]) for e in done["timeline"]][-3:] == [
        ("submitted", "resident"),
        ("accepted", "system"),
        ("approved", "system"),
    ]
    async with session_scope() as s:
        cert = (
            await s.exec(select(ECertificate).where(ECertificate.cert_no == done["result_cert_no"]))
        ).one()
        assert cert.holder_id_hash == id_hash(id_number) and cert.title == "无犯罪记录证明"
        assert cert.source_ref == done["id"]
        approved = (
            await s.exec(select(Event).where(Event.application_id == done["id"], Event.kind == "approved"))
        ).one()
        assert approved.data["rules_passed"] == ["id_card", "hukou"] and approved.data["instant"] is True
        audited = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == done["id"],
                    AuditEvent.action == "gov_services.application_approved",
                )
            )
        ).one()
        assert audited.data["rules_passed"] == ["id_card", "hukou"]
    # Not sampled: nothing waits in the reviewers' queue.
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert done["id"] not in [a["id"] for a in queue]


async def test_a_sampled_instant_approval_waits_in_the_queue_until_a_reviewer_confirms_it(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, sample_all: None
) -> None:
    reviewer, _ = await make_staff(client, login, department=POLICE)
    outsider, _ = await make_staff(client, login, department="谯城区民政局")
    _, done = await _instantly_approved(client, login)
    assert done["instant_sampled"] is True and done["status"] == "approved"
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert done["id"] in [a["id"] for a in queue]
    other = (await client.get(f"{API}/review/queue", headers=outsider)).json()["applications"]
    assert done["id"] not in [a["id"] for a in other]

    resp = await client.post(
        f"{API}/review/applications/{done['id']}/instant-confirm", json={"note": "抽查无误"}, headers=reviewer
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "approved"
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert done["id"] not in [a["id"] for a in queue]


async def test_a_reviewer_revokes_within_the_window_and_is_refused_after_it(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, sample_all: None
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.audit.models import AuditEvent
    from app_api.platform.datahub.models import ECertificate
    from columns.gov_services.config import get_config
    from columns.gov_services.models import Application

    reviewer, reviewer_id = await make_staff(client, login, department=POLICE)
    outsider, _ = await make_staff(client, login, department="谯城区民政局")
    owner, done = await _instantly_approved(client, login)
    reason = {"reason": "抽查发现户籍信息与实际不符"}

    resp = await client.post(f"{API}/review/applications/{done['id']}/revoke", json=reason, headers=outsider)
    assert resp.status_code == 403 and resp.json()["code"] == "gov_services.outside_department"
    resp = await client.post(f"{API}/review/applications/{done['id']}/revoke", json=reason, headers=reviewer)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "revoked" and resp.json()["status_name"] == "已撤销"
    assert resp.json()["decision_reason"] == reason["reason"] and resp.json()["revoked_at"]
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert done["id"] not in [a["id"] for a in queue]
    # Twice is refused: it is no longer an approval.
    resp = await client.post(f"{API}/review/applications/{done['id']}/revoke", json=reason, headers=reviewer)
    assert resp.status_code == 409 and resp.json()["code"] == "gov_services.invalid_state"
    async with session_scope() as s:
        revoked = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == done["id"],
                    AuditEvent.action == "gov_services.application_revoked",
                )
            )
        ).one()
        assert revoked.actor_id == reviewer_id and revoked.data["status"] == "revoked"
        cert = (
            await s.exec(select(ECertificate).where(ECertificate.cert_no == done["result_cert_no"]))
        ).one()
        assert cert.revoked_at is not None and reason["reason"] in (cert.revoke_reason or "")
        cert_revoked = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == cert.id, AuditEvent.action == "datahub.certificate_revoked"
                )
            )
        ).one()
        assert cert_revoked.actor_id == reviewer_id
    # The resident's 证照夹 shows it revoked, and the library is told by datahub's job.
    mine = (await client.get("/api/v1/me/certificates", headers=owner.headers)).json()
    listed = [c for c in mine["items"] if c["id"] == cert.id]
    assert [c["status"] for c in listed] == ["revoked"]

    async def library_told() -> bool:
        async with session_scope() as s:
            row = await s.get(ECertificate, cert.id, populate_existing=True)
            return row is not None and row.revoke_sent_at is not None

    await wait_until(library_told, timeout=20)

    # Another instant approval, decided longer ago than the window.
    _, late = await _instantly_approved(client, login)
    async with session_scope() as s:
        app = await s.get(Application, late["id"])
        assert app is not None and app.decided_at is not None
        app.decided_at -= dt.timedelta(hours=get_config().instant_revoke_hours, minutes=1)
        s.add(app)
    resp = await client.post(f"{API}/review/applications/{late['id']}/revoke", json=reason, headers=reviewer)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "gov_services.revoke_window_closed"
    assert resp.json()["title"] == "已超过撤销时限，不能撤销该秒批结果"
    async with session_scope() as s:
        app = await s.get(Application, late["id"])
        assert app is not None and app.status == "approved" and app.revoked_at is None
        assert not (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == late["id"],
                    col(AuditEvent.action) == "gov_services.application_revoked",
                )
            )
        ).all()


async def test_an_application_a_reviewer_decided_cannot_be_revoked_as_instant(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(66))
    reviewer, _ = await make_staff(client, login, department="谯城区民政局")
    app_id = await prefilled_draft(client, r, "BZ-MZ-001")
    assert (
        await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    ).status_code == 200
    for step in ("accept", "approve"):
        resp = await client.post(f"{API}/review/applications/{app_id}/{step}", json={}, headers=reviewer)
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"{API}/review/applications/{app_id}/revoke", json={"reason": "误操作撤销"}, headers=reviewer
    )
    assert resp.status_code == 409 and resp.json()["code"] == "gov_services.not_instant_approval"
