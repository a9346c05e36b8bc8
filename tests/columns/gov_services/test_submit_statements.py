"""A one-tap submission (一键申报) costs a handful of SQL statements: the draft, the consents and the
data center reads they allow, the materials and conditions check and the submission, in one request
and one transaction. The guard counts every statement the request runs on the test database (the
engine's ``before_cursor_execute`` event) and checks what the resident sees afterwards."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlmodel import select

from tests.columns.gov_services.conftest import API, Resident, make_resident
from tests.conftest import LoginFn
from tests.conftest import counted_statements as counted

ITEM = "BZ-MZ-002"  # 高龄津贴申领: every material by e-certificate reference, no fee, no rules
CERTS = (
    ("resident_id_card", "居民身份证"),
    ("household_register", "居民户口簿"),
    ("social_security_card", "社会保障卡"),
)
MAX_STATEMENTS = 15
# On PostgreSQL the append-only rows and the audit entries (linked into the chain by the statement
# itself) are one statement at the commit with the application's update (``app_api.core.write_batch``):
# the item with the account, message preference and draft, the registry read (the population record
# and the certificates together), that statement.
MAX_STATEMENTS_POSTGRES = 3


@pytest.fixture
def held_jobs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Jobs written by the request stay in the outbox (their wake-ups are held back): the in-process
    worker delivering the notification cannot add its statements to the request's count."""
    from app_api.core.jobs import outbox

    held: list[str] = []

    async def hold(ids: Any) -> list[str]:
        held.extend(ids)
        return []

    monkeypatch.setattr(outbox, "send", hold)
    return held


async def _resident(
    client: httpx.AsyncClient, login: LoginFn, certs: tuple[tuple[str, str], ...]
) -> Resident:
    from app_api.core.db import session_scope
    from app_api.platform.notify.models import NotifyPreference

    r = await make_resident(client, login, certs=certs)
    # No quiet hours: the message goes out at once whatever the hour the test runs (a notification
    # and its outbox job, the most a submission writes).
    async with session_scope() as s:
        s.add(NotifyPreference(account_id=r.account_id, quiet_hours_enabled=False))
    # Steady state for the counted request: the principal and the column gate's settings are cached
    # by this one (as they are for every request but a process's first), so it reads only what the
    # submission must.
    assert (await client.get(f"{API}/applications", headers=r.headers)).status_code == 200
    assert (await client.get(f"{API}/items/{ITEM}")).status_code == 200  # its version, in memory
    return r


async def test_a_one_tap_submission_costs_at_most_fifteen_statements_and_the_resident_sees_it_submitted(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str], is_postgres: bool
) -> None:
    from app_api.core.db import session_scope
    from app_api.core.jobs.models import OutboxMessage
    from app_api.platform.notify.models import Notification

    r = await _resident(client, login, CERTS)
    key = uuid.uuid4().hex
    with counted() as statements:
        resp = await client.post(
            f"{API}/applications/one-tap",
            json={"item_code": ITEM, "client_key": key, "groups": ["person", "certificate"]},
            headers=r.headers,
        )
    assert resp.status_code == 201, resp.text
    listing = "\n".join(f"{i}. {s[:120]}" for i, s in enumerate(statements, 1))
    assert len(statements) <= MAX_STATEMENTS, f"{len(statements)} statements:\n{listing}"
    if is_postgres:
        assert len(statements) <= MAX_STATEMENTS_POSTGRES, f"{len(statements)} statements:\n{listing}"

    app = resp.json()
    assert app["status"] == "submitted" and app["submitted_at"] and app["due_at"]
    assert [e["kind"] for e in app["timeline"]] == ["drafted", "prefilled", "submitted"]
    assert set(app["form"]["ecerts"]) == {
        "申请人居民身份证",
        "居民户口簿",
        "本人社会保障卡（或本人名下银行账户）",
    }
    assert app["form"]["consents"].keys() == {"person", "certificate"}
    assert app["missing_materials"] == []
    # What the resident sees when they open it again.
    again = (await client.get(f"{API}/applications/{app['id']}", headers=r.headers)).json()
    assert again["status"] == "submitted"
    assert [e["kind"] for e in again["timeline"]] == ["drafted", "prefilled", "submitted"]
    # The message is stored for the resident and its delivery job is queued (written with the
    # submission; the worker sends it).
    async with session_scope() as s:
        [note] = (await s.exec(select(Notification).where(Notification.account_id == r.account_id))).all()
        assert note.template == "gov.submitted" and app["number"] in note.text
        assert note.status == "pending"
        job = await s.get(OutboxMessage, held_jobs[0])
        assert job is not None and job.arguments == {"notification_id": note.id}
    # The data center reads are in the resident's access log: who read what, on which consent.
    reads = (await client.get("/api/v1/me/data-access", headers=r.headers)).json()
    consents = set(app["form"]["consents"].values())
    assert {x["consent_id"] for x in reads["items"] if x.get("consent_id") in consents} == consents


async def test_the_same_tap_again_gives_back_the_same_application_once(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str]
) -> None:
    r = await _resident(client, login, CERTS)
    body = {"item_code": ITEM, "client_key": uuid.uuid4().hex, "groups": ["person", "certificate"]}
    first = await client.post(f"{API}/applications/one-tap", json=body, headers=r.headers)
    assert first.status_code == 201, first.text
    second = await client.post(f"{API}/applications/one-tap", json=body, headers=r.headers)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert [e["kind"] for e in second.json()["timeline"]] == ["drafted", "prefilled", "submitted"]
    mine = (await client.get(f"{API}/applications", headers=r.headers)).json()["applications"]
    assert [a["id"] for a in mine] == [first.json()["id"]]
    assert len(held_jobs) == 1  # one message: the second tap wrote nothing


async def test_a_tap_the_records_cannot_complete_stays_a_draft_that_says_what_is_missing(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str]
) -> None:
    # No social security card in the e-certificate library.
    r = await _resident(client, login, CERTS[:2])
    resp = await client.post(
        f"{API}/applications/one-tap",
        json={"item_code": ITEM, "client_key": uuid.uuid4().hex, "groups": ["person", "certificate"]},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    app = resp.json()
    assert app["status"] == "draft" and app["submitted_at"] is None
    assert app["missing_materials"] == ["本人社会保障卡（或本人名下银行账户）"]
    assert [e["kind"] for e in app["timeline"]] == ["drafted", "prefilled"]
    assert held_jobs == []  # nothing sent: nothing was submitted
