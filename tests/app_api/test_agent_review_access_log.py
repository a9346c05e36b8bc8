""" "Who read my data" after real work: an agent files for a villager under a mandate, a reviewer of
the department opens the application; the villager's log names the station and the department,
with the application's number, and never a staff member's account."""

from __future__ import annotations

import httpx
import pytest

from tests.app_api.agents_helpers import (
    API,
    ITEM,
    gov_catalogue,  # noqa: F401  (an autouse fixture)
    make_agent,
    make_resident,
    sms_mandate,
    submission,
)
from tests.conftest import LoginFn

pytestmark = pytest.mark.asyncio
DEPARTMENT = "谯城区民政局"  # the department of ITEM (老年人优待证办理)


async def test_the_villagers_log_names_the_agents_station_and_the_reviewers_department(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    agent = await make_agent(client, login)
    villager = await make_resident(client, login)
    mandate = await sms_mandate(client, agent, villager, scopes=["apply"])
    filed = await client.post(
        f"{API}/agent/submissions", headers=agent.headers, json=submission(villager, ITEM)
    )
    assert filed.status_code == 200, filed.text
    application = filed.json()["application"]
    number = application["number"]

    reviewer = await login(roles=["reviewer"], department=DEPARTMENT)
    opened = await client.get(
        f"{API}/columns/gov_services/review/applications/{application['id']}", headers=reviewer
    )
    assert opened.status_code == 200, opened.text

    log = await client.get(f"{API}/me/data-access", headers=villager.headers)
    assert log.status_code == 200, log.text
    items = [x for x in log.json()["items"] if x["application_ref"] == number]
    by_kind = {x["actor_kind"]: x for x in items}
    assert by_kind["agent"]["actor"] == f"{agent.station.name} 代办员（依您的代办委托）（办件 {number}）"
    assert by_kind["agent"]["mandate_id"] == mandate["id"]
    assert by_kind["officer"]["actor"] == f"{DEPARTMENT} 审核人员（办件 {number}）"
    assert by_kind["officer"]["purpose_name"] == "政务服务办件审核"
    assert by_kind["agent"]["purpose_name"] == "代办员代为申请政务服务"
    reviewer_id = (await client.get(f"{API}/me", headers=reviewer)).json()["id"]
    assert agent.id not in log.text and reviewer_id not in log.text

    # A reviewer of another department cannot open it, and so reads nothing.
    other = await login(roles=["reviewer"], department="亳州市公安局")
    refused = await client.get(
        f"{API}/columns/gov_services/review/applications/{application['id']}", headers=other
    )
    assert refused.status_code in (403, 404)
    again = await client.get(f"{API}/me/data-access", headers=villager.headers)
    assert sum(1 for x in again.json()["items"] if x["actor_kind"] == "officer") == 1
