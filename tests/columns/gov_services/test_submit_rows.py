"""The one-tap submission writes its rows without ORM objects (issue 16 item 5): the draft, the
timeline and the audit chain hold what the model's constructor and ``record_event`` would have."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlmodel import col, select

from tests.columns.gov_services.conftest import API
from tests.columns.gov_services.test_submit_statements import CERTS, ITEM, _resident, held_jobs
from tests.conftest import LoginFn

__all__ = ["held_jobs"]  # the fixture, shared with the statement count


def test_the_draft_row_is_the_one_the_model_would_build() -> None:
    from app_api.core.db import model_row
    from columns.gov_services.models import Application

    given = {
        "number": "2026120412345678",
        "client_key": uuid.uuid4().hex,
        "applicant_id": uuid.uuid4().hex,
        "agent_id": None,
        "item_code": ITEM,
        "item_version_id": uuid.uuid4().hex,
        "item_version": 3,
        "item_name": "高龄津贴申领",
        "department": "市民政局",
        "limit_days": 10,
        "accept_limit_days": 1,
        "review_limit_days": 8,
    }
    row = model_row(Application, dict(given))
    built = Application(**given).model_dump()
    assert set(row) == set(built) == set(Application.__table__.c.keys())  # type: ignore[attr-defined]
    made_each_time = {"id", "created_at", "updated_at"}  # fresh id and clock, as in the constructor
    assert {k: v for k, v in row.items() if k not in made_each_time} == {
        k: v for k, v in built.items() if k not in made_each_time
    }
    assert row["id"] != built["id"] and row["status"] == "draft"


@pytest.mark.asyncio
async def test_a_tap_leaves_its_timeline_and_an_unbroken_audit_chain(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str]
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.audit.models import AuditEvent
    from app_api.platform.audit.service import verify_chain
    from columns.gov_services.models import Event

    r = await _resident(client, login, CERTS)
    resp = await client.post(
        f"{API}/applications/one-tap",
        json={"item_code": ITEM, "client_key": uuid.uuid4().hex, "groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    app = resp.json()
    async with session_scope() as s:
        events = (
            await s.exec(select(Event).where(Event.application_id == app["id"]).order_by(col(Event.at)))
        ).all()
        assert [(e.kind, e.title, e.actor_id, e.actor_role) for e in events] == [
            ("drafted", "创建申请草稿", r.account_id, "resident"),
            ("prefilled", "授权调取信息", r.account_id, "resident"),
            ("submitted", "提交申请", r.account_id, "resident"),
        ]
        assert events[1].data == {"groups": ["person", "certificate"]}
        assert events[2].data["delivery"] == app["delivery"] and events[2].data["version"] >= 1
        # The answer's timeline is the one stored.
        assert [e["kind"] for e in app["timeline"]] == [e.kind for e in events]
        audited = (
            await s.exec(
                select(AuditEvent)
                .where(AuditEvent.subject_id == app["id"], col(AuditEvent.action).like("gov_services.%"))
                .order_by(col(AuditEvent.seq))
            )
        ).all()
        assert [(a.action, a.data["status"]) for a in audited] == [
            ("gov_services.application_drafted", "draft"),
            ("gov_services.application_prefilled", "draft"),
            ("gov_services.application_submitted", "submitted"),
        ]
        assert audited[2].data["rules"] == events[2].data["rules"]
        report = await verify_chain(s)
        assert report.ok, report.reason
