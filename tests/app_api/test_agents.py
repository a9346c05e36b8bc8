"""Liaison stations and village agents: mandates by SMS code or in person, acting only within them,
batches of offline submissions that are idempotent on client keys."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import select

from app_api.core.db import session_scope, sessionmaker
from tests.conftest import LoginFn, new_phone, set_level

pytestmark = pytest.mark.asyncio
API = "/api/v1"
ITEM = "BZ-MZ-001"  # 老年人优待证办理 (L2)
OTHER_ITEM = "BZ-MZ-002"  # 高龄津贴申领 (L2)


@pytest.fixture(scope="module", autouse=True)
async def gov_catalogue(app: Any) -> None:
    """The government-services column files agents' applications (its ``file_on_behalf``)."""
    from columns.gov_services.seed import seed

    async with session_scope() as s:
        await seed(s)


@dataclass
class Station:
    id: str
    name: str


@dataclass
class AgentCtx:
    headers: dict[str, str]
    id: str
    station: Station


async def admin(login: LoginFn) -> dict[str, str]:
    return await login(roles=["admin"])


async def make_station(
    client: httpx.AsyncClient, login: LoginFn, city: str = "常熟", kind: str = "liaison"
) -> Station:
    code = "ST-" + secrets.token_hex(4)
    name = f"亳州驻{city}联络站{code[-4:]}" if kind == "liaison" else f"{city}代办点{code[-4:]}"
    r = await client.post(
        f"{API}/admin/stations",
        headers=await admin(login),
        json={
            "code": code,
            "name": name,
            "kind": kind,
            "city": city,
            "address": f"{city}市人民路1号",
            "hours": "周一至周五 8:30-17:30",
            "contact_name": "王站长",
            "contact_phone": "0512-52000000",
        },
    )
    assert r.status_code == 201, r.text
    return Station(r.json()["id"], name)


async def make_agent(client: httpx.AsyncClient, login: LoginFn, station: Station | None = None) -> AgentCtx:
    station = station or await make_station(client, login)
    headers = await login(roles=["agent"], station_id=station.id)
    me = (await client.get(f"{API}/me", headers=headers)).json()
    return AgentCtx(headers, me["id"], station)


@dataclass
class ResidentCtx:
    headers: dict[str, str]
    id: str
    phone: str
    id_number: str


_seq = iter(range(100, 999))


async def make_resident(
    client: httpx.AsyncClient, login: LoginFn, level: int = 2, real_name: bool = True
) -> ResidentCtx:
    """A resident; real-named (name and citizen ID number on the account) unless told otherwise."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.principal import invalidate
    from app_api.platform.datahub.citizen_id import make
    from app_api.platform.datahub.service import id_hash

    phone = new_phone()
    headers = await login(phone)
    await set_level(client, headers, level)
    rid = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    id_number = make("341602", dt.date(1948, 1, 1) + dt.timedelta(days=next(_seq)), next(_seq))
    if real_name:
        async with session_scope() as s:
            acc = await s.get(Account, rid)
            acc.real_name_enc = encrypt_str("王桂兰", aad="name")
            acc.id_number_enc = encrypt_str(id_number, aad="id_number")
            acc.id_number_hash = id_hash(id_number)
            s.add(acc)
        await invalidate(rid)
    return ResidentCtx(headers, rid, phone, id_number)


async def inbox(client: httpx.AsyncClient, phone: str) -> list[dict[str, Any]]:
    return (await client.get(f"{API}/dev/sms", params={"phone": phone})).json()["messages"]


async def sms_mandate(
    client: httpx.AsyncClient,
    agent: AgentCtx,
    resident: ResidentCtx,
    scopes: list[str] | None = None,
    items: list[str] | None = None,
    days: int = 30,
) -> dict[str, Any]:
    from app_api.core.redis import get_redis

    await (await get_redis()).delete(f"agents:mcool:{resident.phone}")
    r = await client.post(
        f"{API}/agent/mandates/sms-requests",
        headers=agent.headers,
        json={
            "phone": resident.phone,
            "scopes": scopes or ["apply", "track"],
            "items": items or [],
            "days": days,
        },
    )
    assert r.status_code == 202, r.text
    text = next(m["text"] for m in await inbox(client, resident.phone) if "授权验证码" in m["text"])
    code = re.search(r"授权验证码(\d{6})", text)
    assert code, text
    r = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=agent.headers,
        json={"request_id": r.json()["request_id"], "code": code.group(1)},
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def submission(
    resident: ResidentCtx, item: str = ITEM, key: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "client_key": key or "k-" + secrets.token_hex(8),
        "resident_id": resident.id,
        "item_code": item,
        "form": {"person.address": "安徽省亳州市谯城区十八里镇王庄村", "备注": "村代办点代办"},
        **extra,
    }


async def gov_applications(agent_id: str) -> list[Any]:
    from columns.gov_services.models import Application

    async with sessionmaker()() as s:
        return list((await s.exec(select(Application).where(Application.agent_id == agent_id))).all())


# ---------------------------------------------------------------------------------------------


async def test_station_directory_by_city_and_for_the_assistant(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    made = {
        city: await make_station(client, login, city) for city in ("常熟", "南通", "南京江宁", "义乌", "平湖")
    }
    village = await make_station(client, login, "谯城区十八里镇", kind="village")
    r = await client.get(f"{API}/stations", params={"city": "义乌"})
    assert r.status_code == 200
    names = [s["name"] for s in r.json()["stations"]]
    assert made["义乌"].name in names and made["常熟"].name not in names
    one = (await client.get(f"{API}/stations/{village.id}")).json()
    assert one["kind_name"] == "村（社区）代办点" and one["hours"] == "周一至周五 8:30-17:30"

    from bot.sources import Sources

    found = await Sources(None).stations("平湖")
    assert found and all(s["city"] == "平湖" for s in found) and found[0]["address"].startswith("平湖")

    dup = await client.post(
        f"{API}/admin/stations",
        headers=await admin(login),
        json={"code": "bad code!", "name": "x", "city": "常熟", "address": "某地"},
    )
    assert dup.status_code == 422
    r = await client.post(
        f"{API}/admin/stations",
        headers=await login(),
        json={"code": "ST-x1", "name": "某站", "city": "常熟", "address": "某地"},
    )
    assert r.status_code == 403


async def test_admin_assigns_agent_and_agent_sees_station(client: httpx.AsyncClient, login: LoginFn) -> None:
    station = await make_station(client, login, "南通")
    phone = new_phone()
    r = await client.post(
        f"{API}/admin/stations/{station.id}/agents",
        headers=await admin(login),
        json={"phone": phone, "password": "Agent-pass-2026"},
    )
    assert r.status_code == 201 and r.json()["roles"] == ["agent"]
    agent = await make_agent(client, login, station)
    me = (await client.get(f"{API}/agent/me", headers=agent.headers)).json()
    assert me["station"]["name"] == station.name and me["filing_available"] is True

    lost = await login(roles=["agent"])  # an agent nobody assigned to a station
    r = await client.get(f"{API}/agent/me", headers=lost)
    assert r.status_code == 403 and r.json()["code"] == "agents.not_assigned"
    resident = await login()
    assert (await client.get(f"{API}/agent/me", headers=resident)).status_code == 403


async def test_sms_mandate_code_goes_to_residents_own_phone(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    r = await client.post(
        f"{API}/agent/mandates/sms-requests",
        headers=agent.headers,
        json={"phone": resident.phone, "scopes": ["apply"], "days": 30},
    )
    assert r.status_code == 202 and r.json()["phone"] == resident.phone[:3] + "****" + resident.phone[-4:]
    text = (await inbox(client, resident.phone))[0]["text"]
    assert agent.station.name in text and "代为申请办理事项" in text and "30天" in text
    # The code goes to the resident, never back to the agent.
    assert re.search(r"\d{6}", r.text) is None

    wrong = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=agent.headers,
        json={"request_id": r.json()["request_id"], "code": "000000"},
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == "agents.consent_code_invalid"
    assert wrong.json()["tries_left"] == 4
    # Another agent cannot use the request.
    other = await make_agent(client, login)
    code = re.search(r"授权验证码(\d{6})", text).group(1)  # type: ignore[union-attr]
    stolen = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=other.headers,
        json={"request_id": r.json()["request_id"], "code": code},
    )
    assert stolen.status_code == 400
    ok = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=agent.headers,
        json={"request_id": r.json()["request_id"], "code": code},
    )
    assert ok.status_code == 201 and ok.json()["state"] == "valid" and ok.json()["method"] == "sms"
    again = await client.post(
        f"{API}/agent/mandates/sms-confirm",
        headers=agent.headers,
        json={"request_id": r.json()["request_id"], "code": code},
    )
    assert again.status_code == 400  # one code, one mandate

    mine = (await client.get(f"{API}/me/mandates", headers=resident.headers)).json()["mandates"]
    assert [m["station"]["name"] for m in mine] == [agent.station.name]
    consents = (await client.get(f"{API}/me/consents", headers=resident.headers)).json()["consents"]
    assert any(c["purpose"] == "agents.mandate" and c["grantee"] == f"agent:{agent.id}" for c in consents)


async def test_agent_without_valid_mandate_is_refused(client: httpx.AsyncClient, login: LoginFn) -> None:
    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_required"

    # Track-only mandate: applying is outside it; an item restriction is enforced too.
    await sms_mandate(client, agent, resident, scopes=["track"])
    r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    assert r.status_code == 403 and r.json()["code"] == "agents.out_of_scope"
    await sms_mandate(client, agent, resident, scopes=["apply"], items=[OTHER_ITEM])
    r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    assert r.status_code == 403 and r.json()["code"] == "agents.out_of_scope"
    r = await client.post(
        f"{API}/agent/submissions", headers=agent.headers, json=submission(resident, OTHER_ITEM)
    )
    assert r.status_code == 200 and r.json()["status"] == "created", r.text

    # A colleague at the same station holds no mandate from this resident.
    colleague = await make_agent(client, login, agent.station)
    r = await client.post(
        f"{API}/agent/submissions", headers=colleague.headers, json=submission(resident, OTHER_ITEM)
    )
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_required"
    assert len(await gov_applications(agent.id)) == 1 and await gov_applications(colleague.id) == []


async def test_withdrawn_and_expired_mandates_stop_the_agent(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    from app_api.platform.agents.models import Mandate

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    m = await sms_mandate(client, agent, resident)
    assert (
        await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    ).status_code == 200
    r = await client.delete(f"{API}/me/mandates/{m['id']}", headers=resident.headers)
    assert r.status_code == 200 and r.json()["state"] == "withdrawn"
    r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_withdrawn"

    # Withdrawing the consent in the resident's consent list ends the mandate as well.
    m2 = await sms_mandate(client, agent, resident)
    consents = (await client.get(f"{API}/me/consents", headers=resident.headers)).json()["consents"]
    live = next(c for c in consents if c["purpose"] == "agents.mandate" and c["active"])
    await client.delete(f"{API}/me/consents/{live['id']}", headers=resident.headers)
    r = await client.get(f"{API}/agent/residents/{resident.id}/applications", headers=agent.headers)
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_withdrawn"

    m3 = await sms_mandate(client, agent, resident)
    async with session_scope() as s:
        row = await s.get(Mandate, m3["id"])
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        s.add(row)
    r = await client.post(f"{API}/agent/submissions", headers=agent.headers, json=submission(resident))
    assert r.status_code == 403 and r.json()["code"] == "agents.mandate_expired"
    states = {
        x["id"]: x["state"]
        for x in (await client.get(f"{API}/agent/mandates", headers=agent.headers)).json()["mandates"]
    }
    assert states == {m["id"]: "withdrawn", m2["id"]: "withdrawn", m3["id"]: "expired"}
    # Another resident cannot withdraw someone else's mandate.
    stranger = await make_resident(client, login)
    r = await client.delete(f"{API}/me/mandates/{m3['id']}", headers=stranger.headers)
    assert r.status_code == 404


async def test_in_person_mandate_with_attested_id_check(client: httpx.AsyncClient, login: LoginFn) -> None:
    from app_api.platform.datahub.citizen_id import make

    agent = await make_agent(client, login)
    resident = await make_resident(client, login)
    id_number = resident.id_number

    bad = id_number[:-1] + ("0" if id_number[-1] != "0" else "1")
    r = await client.post(
        f"{API}/agent/mandates/in-person",
        headers=agent.headers,
        json={"phone": resident.phone, "scopes": ["apply"], "id_number": bad},
    )
    assert r.status_code == 422 and "身份证号码有误" in r.json()["detail"]
    other = make("341602", dt.date(1962, 7, 9), 33)
    r = await client.post(
        f"{API}/agent/mandates/in-person",
        headers=agent.headers,
        json={"phone": resident.phone, "scopes": ["apply"], "id_number": other},
    )
    assert r.status_code == 422 and r.json()["code"] == "agents.identity_mismatch"

    r = await client.post(
        f"{API}/agent/mandates/in-person",
        headers=agent.headers,
        json={"phone": resident.phone, "scopes": ["apply", "pickup"], "id_number": id_number},
    )
    assert r.status_code == 201 and r.json()["method"] == "in_person", r.text
    assert id_number not in r.text
    from app_api.platform.agents.models import Mandate

    async with sessionmaker()() as s:
        m = await s.get(Mandate, r.json()["id"])
        assert m.attestation["attested_by"] == agent.id and m.attestation["matched_record"] is True
        assert m.attestation["id_number_masked"] == id_number[:3] + "*" * 11 + id_number[
            -4:
        ] and id_number not in str(m.attestation)
    # The resident is told at once by SMS, whatever their settings: they did not type a code.
    for _ in range(100):
        texts = [x["text"] for x in await inbox(client, resident.phone)]
        if any("已登记您的代办授权" in t for t in texts):
            break
        import asyncio

        await asyncio.sleep(0.02)
    assert any(agent.station.name in t and "撤回" in t for t in texts)

    # Pick-up at the station is in scope: the result is posted to the station, addressed to it.
    r = await client.post(
        f"{API}/agent/submissions", headers=agent.headers, json=submission(resident, pickup=True)
    )
    assert r.status_code == 200, r.text
    assert r.json()["application"]["delivery"] == "免费邮寄"
    [app] = await gov_applications(agent.id)
    assert app.applicant_id == resident.id and app.status != "draft"


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
