"""The platform's growing lists page by cursor: the inbox, the operations' delivery report, the audit
log, mandates (the agent's and the resident's), what agents did for a resident, who read the
resident's records, consents. Every row once, newest first, also when a row arrives between pages;
limits, offsets and cursors out of bounds are 422, never a 500."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import httpx

from app_api.core.db import session_scope, utcnow
from app_api.platform import audit
from app_api.platform.agents.models import AgentAction, Mandate, Station
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.models import DataAccessLog
from app_api.platform.notify.models import Notification
from tests.app_api.paging_helpers import check_bounds, check_walk, newest_first, raw_cursor, schedule, walk
from tests.conftest import LoginFn

API = "/api/v1"


async def _me(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return str((await client.get(f"{API}/me", headers=headers)).json()["id"])


# -- the inbox and the delivery report ------------------------------------------------------------


async def _message(account_id: str, template: str, at: dt.datetime) -> str:
    async with session_scope() as s:
        n = Notification(
            account_id=account_id, template=template, text="您的申请已受理", status="in_app", created_at=at
        )
        s.add(n)
    return n.id


async def test_inbox_and_delivery_report_page_by_cursor(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login()
    me = await _me(client, h)
    template = "paging." + secrets.token_hex(4)  # only this test's messages in the report
    expected = newest_first([(at, await _message(me, template, at)) for at in schedule(5)])
    late: list[str] = []

    async def arrives() -> None:
        late.append(await _message(me, template, utcnow()))

    seen, pages = await walk(
        client, f"{API}/me/notifications", h, limit=2, item_id=lambda i: i["id"], between=arrives
    )
    check_walk(seen, expected, late=late[0])
    assert pages == 3

    admin = await login(roles=["admin"])
    seen, _ = await walk(
        client,
        f"{API}/admin/notifications",
        admin,
        limit=2,
        params={"template": template},
        item_id=lambda i: i["id"],
        between=arrives,
    )
    check_walk(seen, [late[0], *expected], late=late[1])
    await check_bounds(client, f"{API}/me/notifications", h)
    await check_bounds(client, f"{API}/admin/notifications", admin)


# -- the audit log ----------------------------------------------------------------------------------


async def _entry(action: str) -> None:
    async with session_scope() as s:
        await audit.record(s, action=action, subject_type="test", subject_id=secrets.token_hex(4))


async def test_audit_log_pages_by_cursor_while_entries_are_written(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    action = "paging." + secrets.token_hex(4)
    for _ in range(5):
        await _entry(action)
    url = f"{API}/admin/audit"
    everything = (await client.get(url, params={"action": action}, headers=admin)).json()
    expected = [str(e["seq"]) for e in everything["items"]]
    assert len(expected) == 5 and everything["next_cursor"] is None

    seen, pages = await walk(
        client,
        url,
        admin,
        limit=2,
        params={"action": action},
        item_id=lambda e: str(e["seq"]),
        between=lambda: _entry(action),
    )
    check_walk(seen, expected)
    assert pages == 3
    # The entry written while paging is the newest now.
    newest = (await client.get(url, params={"action": action, "limit": 1}, headers=admin)).json()["items"][0]
    assert str(newest["seq"]) not in seen and newest["seq"] > int(expected[0])

    await check_bounds(client, url, admin)
    for bad in ("12a", "0", "-3", str(2**63)):  # the cursor's key is a sequence number
        r = await client.get(
            url, params={"cursor": raw_cursor("2026-01-01T08:00:00+00:00", bad)}, headers=admin
        )
        assert r.status_code == 422 and r.json()["code"] == "app.bad_cursor", (bad, r.text)
    for bad_seq in ("0", "99999999999999999999"):  # was a 500 on PostgreSQL (int64 overflow)
        r = await client.get(url, params={"before_seq": bad_seq}, headers=admin)
        assert r.status_code == 422, r.text
    older = (
        await client.get(url, params={"action": action, "before_seq": expected[1]}, headers=admin)
    ).json()
    assert [str(e["seq"]) for e in older["items"]] == expected[2:]


# -- mandates, agents' actions, consents, data access -------------------------------------------------


@dataclass
class Pair:
    resident: dict[str, str]
    resident_id: str
    agent: dict[str, str]
    agent_id: str
    station_id: str


async def _pair(client: httpx.AsyncClient, login: LoginFn) -> Pair:
    async with session_scope() as s:
        st = Station(
            code="ST-" + secrets.token_hex(4), name="分页测试代办点", city="亳州", address="人民路1号"
        )
        s.add(st)
    agent = await login(roles=["agent"], station_id=st.id)
    resident = await login()
    return Pair(resident, await _me(client, resident), agent, await _me(client, agent), st.id)


async def _mandate(p: Pair, at: dt.datetime) -> tuple[str, str]:
    """A mandate and the consent it stands on, both given at ``at``."""
    async with session_scope() as s:
        c = Consent(
            account_id=p.resident_id,
            purpose="agents.mandate",
            scopes=["track"],
            grantee=p.agent_id,
            granted_at=at,
        )
        s.add(c)
        await s.flush()
        m = Mandate(
            resident_id=p.resident_id,
            agent_id=p.agent_id,
            station_id=p.station_id,
            scopes=["track"],
            method="sms",
            consent_id=c.id,
            created_at=at,
            expires_at=at + dt.timedelta(days=90),
        )
        s.add(m)
    return m.id, c.id


async def test_mandates_and_consents_page_by_cursor(client: httpx.AsyncClient, login: LoginFn) -> None:
    p = await _pair(client, login)
    made = [(at, *await _mandate(p, at)) for at in schedule(5)]
    mandates = newest_first([(at, m) for at, m, _ in made])
    consents = newest_first([(at, c) for at, _, c in made])
    late: list[tuple[str, str]] = []

    async def given() -> None:
        late.append(await _mandate(p, utcnow()))

    seen, pages = await walk(
        client,
        f"{API}/me/mandates",
        p.resident,
        key="mandates",
        limit=2,
        item_id=lambda m: m["id"],
        between=given,
    )
    check_walk(seen, mandates, late=late[0][0])
    assert pages == 3
    seen, _ = await walk(
        client,
        f"{API}/agent/mandates",
        p.agent,
        key="mandates",
        limit=2,
        item_id=lambda m: m["id"],
        between=given,
    )
    check_walk(seen, [late[0][0], *mandates], late=late[1][0])
    seen, _ = await walk(
        client,
        f"{API}/me/consents",
        p.resident,
        key="consents",
        limit=2,
        item_id=lambda c: c["id"],
        between=given,
    )
    check_walk(seen, [late[1][1], late[0][1], *consents], late=late[2][1])
    for url, h in (
        (f"{API}/me/mandates", p.resident),
        (f"{API}/agent/mandates", p.agent),
        (f"{API}/me/consents", p.resident),
    ):
        await check_bounds(client, url, h)


async def test_agent_actions_and_data_access_page_by_cursor(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    p = await _pair(client, login)

    async def acted(at: dt.datetime) -> str:
        subject = secrets.token_hex(8)
        async with session_scope() as s:
            s.add(
                AgentAction(
                    agent_id=p.agent_id,
                    station_id=p.station_id,
                    resident_id=p.resident_id,
                    action="tracked",
                    subject_id=subject,
                    at=at,
                )
            )
        return subject

    async def read(at: dt.datetime) -> str:
        purpose = "核验" + secrets.token_hex(4)
        async with session_scope() as s:
            s.add(
                DataAccessLog(
                    accessor_id=p.agent_id,
                    subject_account_id=p.resident_id,
                    subject_hash="x" * 64,
                    record_type="population",
                    purpose=purpose,
                    at=at,
                )
            )
        return purpose

    # Neither list shows a row id: the subject and the purpose tell the rows apart. Same-instant rows
    # are ordered by their (hidden) ids, so the expected order is taken from one unpaged read.
    times = schedule(5)
    for at in times:
        await acted(at)
        await read(at)
    for url, key, field in (
        (f"{API}/me/agent-actions", "actions", "subject_id"),
        (f"{API}/me/data-access", "items", "purpose"),
    ):
        whole = (await client.get(url, headers=p.resident)).json()
        expected = [i[field] for i in whole[key]]
        assert len(expected) == 5 and whole["next_cursor"] is None
        assert [i["at"] for i in whole[key]] == sorted((i["at"] for i in whole[key]), reverse=True)
        late: list[str] = []

        async def arrives(field: str = field) -> None:
            late.append(await (acted if field == "subject_id" else read)(utcnow()))

        seen, pages = await walk(
            client, url, p.resident, key=key, limit=2, item_id=lambda i, f=field: i[f], between=arrives
        )
        check_walk(seen, expected, late=late[0])
        assert pages == 3
        await check_bounds(client, url, p.resident)
