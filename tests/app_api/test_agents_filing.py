"""Agents filing for residents: batches of offline submissions that are idempotent on client keys,
tracking, uploads, and filing without the catalogue."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from app_api.core.db import session_scope, sessionmaker
from tests.app_api.agents_helpers import (
    API,
    ITEM,
    OTHER_ITEM,
    gov_applications,
    gov_catalogue,  # noqa: F401  (an autouse fixture)
    make_agent,
    make_resident,
    sms_mandate,
    submission,
)
from tests.conftest import LoginFn

pytestmark = pytest.mark.asyncio


async def test_batch_of_20_sent_twice_creates_20_applications(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    agent = await make_agent(client, login)
    residents = [await make_resident(client, login) for _ in range(4)]
    for res in residents:
        await sms_mandate(client, agent, res, scopes=["apply"])
    batch = [
        submission(residents[i % 4], ITEM if i % 2 else OTHER_ITEM, key=f"offline-{i:03d}-{agent.id[:8]}")
        for i in range(20)
    ]
    first = await client.post(f"{API}/agent/submissions/batch", headers=agent.headers, json={"items": batch})
    assert first.status_code == 200, first.text
    assert first.json()["summary"] == {"created": 20, "duplicate": 0, "failed": 0}
    # The connection dropped before the answer arrived: the agent's device sends it all again.
    second = await client.post(f"{API}/agent/submissions/batch", headers=agent.headers, json={"items": batch})
    assert second.json()["summary"] == {"created": 0, "duplicate": 20, "failed": 0}
    assert [r["application"]["id"] for r in first.json()["results"]] == [
        r["application"]["id"] for r in second.json()["results"]
    ]
    apps = await gov_applications(agent.id)
    assert len(apps) == 20 and len({a.number for a in apps}) == 20
    assert {a.applicant_id for a in apps} == {r.id for r in residents}

    # Every action names the agent and the station.
    from app_api.platform.agents.models import AgentAction

    async with sessionmaker()() as s:
        filed = (
            await s.exec(
                select(AgentAction).where(
                    AgentAction.agent_id == agent.id, AgentAction.action == "application_filed"
                )
            )
        ).all()
    assert len(filed) == 20 and {a.station_id for a in filed} == {agent.station.id}
    seen = (await client.get(f"{API}/me/agent-actions", headers=residents[0].headers)).json()["actions"]
    assert sum(1 for a in seen if a["action"] == "application_filed") == 5
    assert {a["station"] for a in seen} == {agent.station.name}


async def test_batch_with_bad_items_processes_the_good_ones_and_writes_nothing_for_the_rest(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from app_api.platform.agents.models import Submission

    agent = await make_agent(client, login)
    covered = await make_resident(client, login)
    uncovered = await make_resident(client, login)
    unnamed = await make_resident(client, login, level=1, real_name=False)
    await sms_mandate(client, agent, covered, scopes=["apply"])
    await sms_mandate(client, agent, unnamed, scopes=["apply"])
    good1, good2 = submission(covered), submission(covered, OTHER_ITEM)
    items = [
        good1,
        {"client_key": "broken-0001", "resident_id": covered.id},  # no item code
        submission(uncovered),  # no mandate
        submission(covered, "BZ-NO-SUCH"),  # unknown item
        submission(unnamed),  # no citizen ID on record: the column cannot file it
        {**submission(covered), "client_key": good1["client_key"]},  # key repeated in the batch
        "not an object",
        good2,
    ]
    r = await client.post(f"{API}/agent/submissions/batch", headers=agent.headers, json={"items": items})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [x["status"] for x in res] == [
        "created",
        "failed",
        "failed",
        "failed",
        "failed",
        "failed",
        "failed",
        "created",
    ]
    codes = [x.get("error", {}).get("code") for x in res]
    assert codes[1] == "app.validation_failed"
    assert codes[2] == "agents.mandate_required"
    assert codes[3] and codes[3] != "app.internal"
    assert codes[4] == "gov_services.real_name_required"
    assert codes[5] == "agents.client_key_reused"
    assert codes[6] == "app.validation_failed"
    assert len(await gov_applications(agent.id)) == 2
    async with sessionmaker()() as s:
        subs = (await s.exec(select(Submission).where(Submission.agent_id == agent.id))).all()
    assert sorted(x.client_key for x in subs) == sorted([good1["client_key"], good2["client_key"]])

    # A client key reused for a different item is refused, not treated as a resend.
    r = await client.post(
        f"{API}/agent/submissions", headers=agent.headers, json={**good1, "item_code": OTHER_ITEM}
    )
    assert r.status_code == 409 and r.json()["code"] == "agents.client_key_reused"
    too_many = await client.post(
        f"{API}/agent/submissions/batch",
        headers=agent.headers,
        json={"items": [submission(covered) for _ in range(101)]},
    )
    assert too_many.status_code == 422


async def test_tracking_and_elderly_mode_need_their_scopes(client: httpx.AsyncClient, login: LoginFn) -> None:
    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await sms_mandate(client, agent, resident, scopes=["apply"])
    r = await client.get(f"{API}/agent/residents/{resident.id}/applications", headers=agent.headers)
    assert r.status_code == 403 and r.json()["code"] == "agents.out_of_scope"
    r = await client.patch(
        f"{API}/agent/residents/{resident.id}/elderly-mode", headers=agent.headers, json={"enabled": True}
    )
    assert r.status_code == 403

    await sms_mandate(client, agent, resident, scopes=["apply", "track", "settings"])
    await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    r = await client.get(f"{API}/agent/residents/{resident.id}/applications", headers=agent.headers)
    assert r.status_code == 200 and [a["item"] for a in r.json()["applications"]] == ["老年人优待证办理"]
    r = await client.patch(
        f"{API}/agent/residents/{resident.id}/elderly-mode", headers=agent.headers, json={"enabled": True}
    )
    assert r.status_code == 200 and r.json()["elderly_mode"] is True
    home = (await client.get(f"{API}/home", headers=resident.headers)).json()
    assert home["mode"] == "elderly"
    assert (await client.get(f"{API}/me", headers=resident.headers)).json()["elderly_mode"] is True
    actions = [
        a["action"]
        for a in (await client.get(f"{API}/me/agent-actions", headers=resident.headers)).json()["actions"]
    ]
    assert "elderly_mode_set" in actions and "tracked" in actions


async def test_filing_unavailable_without_the_capability(client: httpx.AsyncClient, login: LoginFn) -> None:
    from app_api.platform import capabilities
    from app_api.platform.capabilities import ServiceCatalogue

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await sms_mandate(client, agent, resident, scopes=["apply"])
    cap = capabilities.withdraw(ServiceCatalogue)
    assert isinstance(cap, ServiceCatalogue)
    try:
        r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    finally:
        capabilities.provide(ServiceCatalogue, cap)
    assert r.status_code == 503 and r.json()["code"] == "agents.filing_unavailable", r.text
    async with sessionmaker()() as s:
        from app_api.platform.agents.models import Submission

        n = (
            await s.exec(
                sa.select(sa.func.count()).select_from(Submission).where(Submission.agent_id == agent.id)
            )
        ).one()
    assert n[0] == 0


async def test_demo_stations_seed_is_idempotent_and_serves_the_demo_agent(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from app_api.platform.agents.seed import STATIONS, seed

    async with session_scope() as s:
        first = await seed(s)
    async with session_scope() as s:
        assert await seed(s) == "stations +0"
    assert first in (f"stations +{len(STATIONS)}", "stations +0")
    agent = await login(roles=["agent"], station_id="changshu")
    me = (await client.get(f"{API}/agent/me", headers=agent)).json()
    assert me["station"]["city"] == "常熟" and me["station"]["kind_name"] == "异地联络站"


async def test_the_same_batch_sent_concurrently_still_creates_each_application_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    import asyncio

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await sms_mandate(client, agent, resident, scopes=["apply"])
    batch = [submission(resident, ITEM if i % 2 else OTHER_ITEM) for i in range(10)]
    a, b = await asyncio.gather(
        client.post(f"{API}/agent/submissions/batch", headers=agent.headers, json={"items": batch}),
        client.post(f"{API}/agent/submissions/batch", headers=agent.headers, json={"items": batch}),
    )
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    created = a.json()["summary"]["created"] + b.json()["summary"]["created"]
    dups = a.json()["summary"]["duplicate"] + b.json()["summary"]["duplicate"]
    assert (created, dups) == (10, 10)
    assert len(await gov_applications(agent.id)) == 10


async def test_uploading_for_a_resident_needs_the_upload_scope(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    await sms_mandate(client, agent, resident, scopes=["apply"])
    url = f"{API}/agent/residents/{resident.id}/applications/some-application/materials"
    files = {"file": ("id.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")}
    r = await client.post(url, headers=agent.headers, data={"material": "申请人居民身份证"}, files=files)
    assert r.status_code == 403 and r.json()["code"] == "agents.out_of_scope"
    other = await make_agent(client, login)
    r = await client.post(url, headers=other.headers, data={"material": "申请人居民身份证"}, files=files)
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_required"
