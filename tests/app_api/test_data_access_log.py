"""Who read my data: every read through the data-center gateway names its actor (resident, officer
with department, agent with station and mandate, system job), purpose and application in the
resident's access log, and is an entry of the audit chain that ``wojia audit verify`` checks."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from app_api.core.db import session_scope, sessionmaker
from app_api.platform import audit
from app_api.platform.agents.models import Station
from app_api.platform.audit.models import AuditEvent
from app_api.platform.consent import service as consent
from app_api.platform.datahub.access_log import REGISTRY_READ, Actor
from app_api.platform.datahub.models import DataAccessLog
from app_api.platform.datahub.service import Datahub, LocalDatahub
from tests.app_api.agents_helpers import gov_catalogue  # noqa: F401  (an autouse fixture)
from tests.columns.gov_services.conftest import API, Resident, make_resident, make_staff, new_application
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"
DEPARTMENT = "亳州市公安局"
STATION = "谯城区古井镇李庄村代办点"


async def _station() -> str:
    async with session_scope() as s:
        st = Station(
            code=f"T{os.urandom(6).hex()}",
            name=STATION,
            city="亳州市",
            district="谯城区",
            address="谯城区古井镇李庄村村委会",
        )
        s.add(st)
        await s.flush()
        return st.id


async def _reads(client: httpx.AsyncClient, r: Resident) -> list[dict[str, Any]]:
    resp = await client.get("/api/v1/me/data-access", headers=r.headers)
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def _pull(r: Resident, *, accessor_id: str, actor: Actor | None, application_ref: str | None) -> None:
    """A population pull for the resident's application, on a consent for that purpose."""
    async with session_scope() as s:
        c = await consent.grant(
            s,
            account_id=r.account_id,
            purpose="gov_services.prefill",
            scopes=["population.basic"],
            grantee="gov_services",
            ttl=dt.timedelta(days=1),
        )
        await Datahub(LocalDatahub()).person(
            s,
            id_number=r.id_number,
            accessor_id=accessor_id,
            purpose="gov_services.prefill",
            consent_id=c.id,
            subject_account_id=r.account_id,
            actor=actor,
            application_ref=application_ref,
        )


async def test_access_log_names_the_department_the_station_and_the_application(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await make_resident(client, login)
    other = await make_resident(client, login)
    # The resident's own application, prefilled from the registry (a pull by the resident).
    app = await new_application(client, r, OLD_AGE)
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill", json={"groups": ["person"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    number = app["number"]

    station_id = await _station()
    agent_headers = await login(roles=["agent"], station_id=station_id)
    agent_id = (await client.get("/api/v1/me", headers=agent_headers)).json()["id"]
    _, reviewer_id = await make_staff(client, login, department=DEPARTMENT)

    # The agent reads under a mandate; the reviewer reads with nothing but their account id (the
    # gateway works out the department); a nightly job reads as the system.
    await _pull(
        r,
        accessor_id=agent_id,
        actor=Actor.agent(agent_id, station_id, "mandate0001"),
        application_ref=number,
    )
    await _pull(r, accessor_id=reviewer_id, actor=None, application_ref=number)
    await _pull(r, accessor_id="job", actor=Actor.system("datahub.recheck"), application_ref=None)

    items = await _reads(client, r)
    by_kind = {x["actor_kind"]: x for x in items}
    assert set(by_kind) >= {"resident", "agent", "officer", "system"}, items

    me = by_kind["resident"]
    assert me["by_self"] is True and me["actor"] == "本人"
    assert me["purpose_name"] == "政务服务一键申报调取信息" and me["record_name"] == "人口信息"

    officer = by_kind["officer"]
    assert officer["actor"] == f"{DEPARTMENT} 审核人员（办件 {number}）"
    assert officer["department"] == DEPARTMENT and officer["application_ref"] == number
    assert officer["by_self"] is False

    agent = by_kind["agent"]
    assert agent["actor"] == f"{STATION} 代办员（依您的代办委托）（办件 {number}）"
    assert agent["station"] == STATION and agent["mandate_id"] == "mandate0001"

    assert by_kind["system"]["actor"] == "系统自动处理（datahub.recheck）"

    # Nothing names a person or leaks anyone's account: no staff account id in the resident's view.
    text = str(items)
    assert agent_id not in text and reviewer_id not in text

    # Another resident sees none of these reads.
    theirs = await _reads(client, other)
    assert all(x["application_ref"] != number for x in theirs)
    assert not any(x["actor_kind"] in {"agent", "officer"} for x in theirs)


async def test_each_pull_is_an_audit_entry_and_verify_names_an_edited_one(
    client: httpx.AsyncClient, login: LoginFn, is_postgres: bool
) -> None:
    r = await make_resident(client, login)
    _, reviewer_id = await make_staff(client, login, department=DEPARTMENT)
    await _pull(r, accessor_id=reviewer_id, actor=None, application_ref="BZ20261203000001")
    async with sessionmaker()() as s:
        log = (
            await s.exec(
                select(DataAccessLog).where(
                    DataAccessLog.subject_account_id == r.account_id, DataAccessLog.accessor_id == reviewer_id
                )
            )
        ).one()
        entry = (
            await s.exec(
                select(AuditEvent).where(AuditEvent.action == REGISTRY_READ, AuditEvent.subject_id == log.id)
            )
        ).one()
        assert entry.actor_id == reviewer_id
        assert entry.data["actor_kind"] == "officer" and entry.data["actor_org"] == DEPARTMENT
        assert entry.data["application_ref"] == "BZ20261203000001"
        assert entry.data["purpose"] == "gov_services.prefill" and entry.data["found"] is True
        # No personal data in the chain: the ID number never appears.
        assert r.id_number not in str(entry.data)
        assert (await audit.verify_chain(s)).ok
        victim, original = entry.seq, dict(entry.data)

    trigger = "ALTER TABLE app_audit_event {} TRIGGER app_audit_event_append_only"
    async with sessionmaker()() as s:
        if is_postgres:
            # The database refuses to rewrite history; a tamperer with superuser rights lifts that first.
            await s.exec(sa.text(trigger.format("DISABLE")))  # type: ignore[call-overload]
        # Someone hides that the department read the record: the entry now says the resident did.
        await s.exec(
            sa.update(AuditEvent)
            .where(col(AuditEvent.seq) == victim)
            .values(data={**original, "actor_kind": "resident", "actor_org": None})
        )
        await s.commit()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "app_api.wiring.cli", "audit", "verify"],
            capture_output=True,
            text=True,
            env={**os.environ},
            timeout=120,
        )
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"audit chain BROKEN at entry {victim}:" in out.stderr
        assert "已被篡改" in out.stderr
    finally:
        async with sessionmaker()() as s:
            await s.exec(sa.update(AuditEvent).where(col(AuditEvent.seq) == victim).values(data=original))
            if is_postgres:
                await s.exec(sa.text(trigger.format("ENABLE")))  # type: ignore[call-overload]
            await s.commit()
        async with sessionmaker()() as s:
            assert (await audit.verify_chain(s)).ok


@pytest.mark.parametrize("kind", ["reviewer", "bank_officer"])
async def test_a_staff_read_without_an_actor_is_named_by_role(
    client: httpx.AsyncClient, login: LoginFn, kind: str
) -> None:
    r = await make_resident(client, login)
    staff = {"reviewer": {"department": "谯城区民政局"}, "bank_officer": {"institution_id": "bank-bz"}}[kind]
    headers = await login(roles=[kind], **staff)
    staff_id = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    await _pull(r, accessor_id=staff_id, actor=None, application_ref=None)
    (item,) = [x for x in await _reads(client, r) if not x["by_self"]]
    expected = {"reviewer": "谯城区民政局 审核人员", "bank_officer": "金融机构（bank-bz） 工作人员"}[kind]
    assert item["actor"] == expected


async def test_public_certificate_verify_is_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    from app_api.core.redis import get_redis
    from app_api.platform.datahub import wallet

    async def forget_counts() -> None:
        r = await get_redis()
        keys = [k async for k in r.scan_iter(match="datahub:verify:*")]
        if keys:
            await r.delete(*keys)

    # Other tests' verifications from this same address this minute would count against the limit.
    await forget_counts()
    statuses: list[int] = []
    try:
        # Twice the limit and one: a minute boundary in between restarts the window once at most.
        for _ in range(2 * wallet.VERIFY_PER_IP_PER_MINUTE + 1):
            resp = await client.get("/api/v1/certificates/verify", params={"code": "nope.1.bad"})
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        assert len(statuses) > wallet.VERIFY_PER_IP_PER_MINUTE
        body = resp.json()
        assert body["code"] == "datahub.verify_rate_limited" and body["title"] == "核验过于频繁，请稍后再试"
        assert 0 < int(resp.headers["retry-after"]) <= 60
        # Below the limit the code itself was judged (an invalid code, not a refusal).
        assert set(statuses[:-1]) == {statuses[0]} and statuses[0] != 429
    finally:
        await forget_counts()


async def test_a_read_of_our_own_records_is_logged_and_chained(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    """How a column records an officer opening an application (no registry involved)."""
    from app_api.platform.accounts.principal import Principal
    from app_api.platform.datahub.access_log import DATA_READ, record_read

    r = await make_resident(client, login)
    _, reviewer_id = await make_staff(client, login, department=DEPARTMENT)
    officer = Principal(id=reviewer_id, roles=("reviewer",), identity_level=0, department=DEPARTMENT)
    async with session_scope() as s:
        log_id = await record_read(
            s,
            actor=Actor.of(officer, subject_account_id=r.account_id),
            subject_account_id=r.account_id,
            record_type="application",
            purpose="gov_services.review",
            application_ref="BZ20261203000042",
            fields=["form", "uploads"],
        )
    (item,) = [x for x in await _reads(client, r) if not x["by_self"]]
    assert item["actor"] == f"{DEPARTMENT} 审核人员（办件 BZ20261203000042）"
    assert item["purpose_name"] == "政务服务办件审核" and item["record_name"] == "办件材料"
    async with sessionmaker()() as s:
        entry = (await s.exec(select(AuditEvent).where(AuditEvent.subject_id == log_id))).one()
    assert entry.action == DATA_READ and entry.actor_id == reviewer_id
