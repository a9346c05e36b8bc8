"""Liaison stations and village agents: stations, and mandates by SMS code or in person that bound what
an agent may do."""

from __future__ import annotations

import datetime as dt
import re

import httpx
import pytest

from app_api.core.db import session_scope, sessionmaker
from tests.app_api.agents_helpers import (
    API,
    OTHER_ITEM,
    admin,
    gov_applications,
    gov_catalogue,  # noqa: F401  (an autouse fixture)
    inbox,
    make_agent,
    make_resident,
    make_station,
    sms_mandate,
    submission,
)
from tests.conftest import LoginFn, new_phone

pytestmark = pytest.mark.asyncio


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
    # Only 平湖's stations, this test's among them (the demo seed may have added its own 平湖 station).
    assert found and all(s["city"] == "平湖" for s in found)
    assert made["平湖"].name in [s["name"] for s in found]

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
