"""A step-up without a face (issue 13, item 7): an agent holding the resident's mandate checks them in
person for their pending step-up request; the resident's phone collects the step-up token and uses
it, here for a loan application, end to end through the HTTP API. And the refusals: no mandate,
another resident's request, an expired request, a wrong ID card, a withdrawn mandate; each audited.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from identity_api_helpers import API, account_id, me, problem, real_name
from sqlmodel import select

from app_api.core.db import sessionmaker
from app_api.core.redis import get_redis
from app_api.platform.agents.models import AgentAction
from app_api.platform.audit.models import AuditEvent
from identity.models import IdentityAttempt
from tests.app_api.agents_helpers import AgentCtx, make_agent
from tests.columns.loans.test_loans import application, institution, product

LOANS = "/api/v1/columns/loans"


async def _attested_resident(client: Any, login: Any, person_factory: Any, agent: AgentCtx) -> dict[str, Any]:
    """A resident who reached L3 through the agent's in-person attestation (no face data at all)."""
    phone = "137" + f"{secrets.randbelow(10**8):08d}"
    headers = await login(phone)
    name, number = await person_factory("周永刚", None)
    assert (await real_name(client, headers, name, number)).status_code == 200
    body = {"resident_phone": phone, "id_number": number, "name": name, "resident_agreed": True}
    r = await client.post(f"{API}/agent/attestations", json=body, headers=agent.headers)
    assert r.status_code == 201, r.text
    view = await me(client, headers)
    assert view["identity_level"] == 3 and view["face"]["data_stored"] is False
    return {
        "headers": headers,
        "phone": phone,
        "name": name,
        "number": number,
        "id": await account_id(client, headers),
    }


async def _mandate(client: Any, agent: AgentCtx, resident: dict[str, Any], scopes: list[str]) -> str:
    r = await client.post(
        "/api/v1/agent/mandates/in-person",
        headers=agent.headers,
        json={"phone": resident["phone"], "scopes": scopes, "id_number": resident["number"]},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _request(client: Any, resident: dict[str, Any], purpose: str = "loans.apply") -> str:
    r = await client.post(f"{API}/step-ups/in-person", json={"purpose": purpose}, headers=resident["headers"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["purpose"] == purpose and body["expires_in"] == 600 and body["instructions"]
    return str(body["request_id"])


def _check(resident: dict[str, Any], request_id: str, **over: Any) -> dict[str, Any]:
    return {
        "resident_phone": resident["phone"],
        "request_id": request_id,
        "id_number": resident["number"],
        "name": resident["name"],
        "resident_agreed": True,
        **over,
    }


async def _attempts(aid: str, kind: str = "agent_step_up") -> list[IdentityAttempt]:
    async with sessionmaker()() as s:
        rows = (
            await s.exec(
                select(IdentityAttempt).where(IdentityAttempt.account_id == aid, IdentityAttempt.kind == kind)
            )
        ).all()
    return sorted(rows, key=lambda a: a.created_at)


async def test_an_agent_attested_resident_applies_for_a_loan_without_a_face(
    client, login, person_factory
) -> None:
    agent = await make_agent(client, login)
    resident = await _attested_resident(client, login, person_factory, agent)
    mandate_id = await _mandate(client, agent, resident, ["apply", "track"])
    _, officer = await institution(client, login, "亳州药都农村商业银行")
    p = await product(client, officer)

    # Without a step-up the application is refused, as for everyone.
    r = await client.post(f"{LOANS}/applications", headers=resident["headers"], json=application(p["id"]))
    problem(r, 403, "identity.step_up_required")

    request_id = await _request(client, resident)
    token_url = f"{API}/step-ups/in-person/{request_id}/token"
    # Nothing to collect before the agent has checked.
    problem(
        await client.post(token_url, headers=resident["headers"]), 409, "identity.step_up_request_pending"
    )

    r = await client.post(f"{API}/agent/step-ups", json=_check(resident, request_id), headers=agent.headers)
    assert r.status_code == 201, r.text
    done = r.json()
    assert done["purpose"] == "loans.apply" and done["mandate_id"] == mandate_id
    assert done["station_id"] == agent.station.id
    # The agent is not handed the resident's token.
    assert "step_up_token" not in r.text
    # Approving the same request twice is refused.
    again = await client.post(
        f"{API}/agent/step-ups", json=_check(resident, request_id), headers=agent.headers
    )
    problem(again, 409, "identity.step_up_request_used")

    # Another resident cannot collect this resident's token.
    stranger = await login(roles=None)
    problem(await client.post(token_url, headers=stranger), 410, "identity.step_up_request_expired")

    r = await client.post(token_url, headers=resident["headers"])
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["purpose"] == "loans.apply" and got["identity_level"] == 3 and got["expires_in"] == 300
    token = got["step_up_token"]
    problem(await client.post(token_url, headers=resident["headers"]), 409, "identity.step_up_request_used")

    # The token is scoped like a face check's: this account, this purpose, 5 minutes, once.
    redis = await get_redis()
    keys = [k async for k in redis.scan_iter(match=f"identity:stepup:{resident['id']}:loans.apply:*")]
    assert len(keys) == 1 and 0 < await redis.ttl(keys[0]) <= 300
    r = await client.post(
        f"{LOANS}/applications",
        headers={**resident["headers"], "X-Step-Up-Token": token},
        json=application(p["id"]),
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "submitted"
    r = await client.post(
        f"{LOANS}/applications",
        headers={**resident["headers"], "X-Step-Up-Token": token},
        json=application(p["id"]),
    )
    problem(r, 403, "identity.step_up_invalid")

    # Recorded: the resident's history, the agent's action under the mandate, the audit chain.
    (attempt,) = await _attempts(resident["id"])
    assert attempt.id == done["attempt_id"] and attempt.outcome == "passed" and attempt.actor_id == agent.id
    assert attempt.purpose == "loans.apply" and attempt.data["mandate_id"] == mandate_id
    history = (await me(client, resident["headers"]))["history"]
    assert ("agent_step_up", "passed", agent.station.id) in {
        (h["kind"], h["outcome"], h["station_id"]) for h in history
    }
    async with sessionmaker()() as s:
        actions = (
            await s.exec(
                select(AgentAction).where(
                    AgentAction.resident_id == resident["id"], AgentAction.action == "identity_step_up"
                )
            )
        ).all()
        events = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == resident["id"],
                    sa.or_(
                        AuditEvent.action == "identity.step_up_in_person",
                        AuditEvent.action == "agents.identity_step_up",
                    ),
                )
            )
        ).all()
    assert [(a.agent_id, a.mandate_id, a.subject_id) for a in actions] == [(agent.id, mandate_id, attempt.id)]
    assert sorted(e.action for e in events) == ["agents.identity_step_up", "identity.step_up_in_person"]
    assert all(e.actor_id == agent.id and e.data["mandate_id"] == mandate_id for e in events)


async def test_in_person_step_up_refusals(client, login, person_factory) -> None:
    agent = await make_agent(client, login)
    resident = await _attested_resident(client, login, person_factory, agent)
    check_url = f"{API}/agent/step-ups"

    # Only L3 residents open a request (the step-up proves L3 for one purpose).
    l2 = await login()
    problem(
        await client.post(f"{API}/step-ups/in-person", json={"purpose": "loans.apply"}, headers=l2),
        403,
        "identity.level_required",
    )
    problem(
        await client.post(
            f"{API}/step-ups/in-person", json={"purpose": "bad purpose"}, headers=resident["headers"]
        ),
        422,
        "identity.purpose_invalid",
    )

    request_id = await _request(client, resident, purpose="fund.withdraw")
    # No mandate from this resident: refused (this agent attested them, but holds no mandate yet).
    problem(
        await client.post(check_url, json=_check(resident, request_id), headers=agent.headers),
        403,
        "agents.mandate_required",
    )
    # A mandate that does not cover applying on the resident's behalf.
    await _mandate(client, agent, resident, ["track"])
    problem(
        await client.post(check_url, json=_check(resident, request_id), headers=agent.headers),
        403,
        "agents.out_of_scope",
    )
    mandate_id = await _mandate(client, agent, resident, ["apply"])
    # Another agent (another station), without a mandate of their own.
    other_agent = await make_agent(client, login)
    problem(
        await client.post(check_url, json=_check(resident, request_id), headers=other_agent.headers),
        403,
        "agents.mandate_required",
    )
    # A resident's request presented for another resident.
    other = await _attested_resident(client, login, person_factory, agent)
    await _mandate(client, agent, other, ["apply"])
    others_request = await _request(client, other)
    problem(
        await client.post(check_url, json=_check(resident, others_request), headers=agent.headers),
        403,
        "identity.step_up_request_mismatch",
    )
    # The ID card shown is not this resident's.
    wrong = _check(resident, request_id, name="周永利")
    problem(
        await client.post(check_url, json=wrong, headers=agent.headers), 422, "identity.attestation_mismatch"
    )
    # Not agreed by the resident; not an agent at all.
    problem(
        await client.post(
            check_url, json=_check(resident, request_id, resident_agreed=False), headers=agent.headers
        ),
        422,
        "identity.consent_not_given",
    )
    problem(
        await client.post(check_url, json=_check(resident, request_id), headers=resident["headers"]),
        403,
        "auth.forbidden",
    )
    # The mandate withdrawn by the resident.
    r = await client.delete(f"/api/v1/me/mandates/{mandate_id}", headers=resident["headers"])
    assert r.status_code == 200, r.text
    body = problem(
        await client.post(check_url, json=_check(resident, request_id), headers=agent.headers),
        403,
        "agents.out_of_scope",  # the remaining valid mandate covers tracking only
    )
    assert body["scope"] == "apply"
    # An expired request (what Redis does after 10 minutes) and an unknown one.
    await _mandate(client, agent, resident, ["apply"])
    fresh = await _request(client, resident)
    redis = await get_redis()
    key = f"identity:stepup_req:{hashlib.sha256(fresh.encode()).hexdigest()}"
    assert 0 < await redis.ttl(key) <= 600
    await redis.delete(key)
    problem(
        await client.post(check_url, json=_check(resident, fresh), headers=agent.headers),
        410,
        "identity.step_up_request_expired",
    )
    problem(
        await client.post(check_url, json=_check(resident, secrets.token_urlsafe(18)), headers=agent.headers),
        410,
        "identity.step_up_request_expired",
    )
    problem(
        await client.post(f"{API}/step-ups/in-person/{fresh}/token", headers=resident["headers"]),
        410,
        "identity.step_up_request_expired",
    )

    # No step-up token was handed out by any of these, and each refusal is on record.
    assert not [k async for k in redis.scan_iter(match=f"identity:stepup:{resident['id']}:*")]
    recorded = [(a.outcome, a.code) for a in await _attempts(resident["id"])]
    assert recorded == [
        ("refused", "agents.mandate_required"),
        ("refused", "agents.out_of_scope"),
        ("refused", "agents.mandate_required"),
        ("refused", "identity.step_up_request_mismatch"),
        ("failed", "identity.attestation_mismatch"),
        ("refused", "agents.out_of_scope"),
        ("refused", "identity.step_up_request_expired"),
        ("refused", "identity.step_up_request_expired"),
    ]
    async with sessionmaker()() as s:
        refusals = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.subject_id == resident["id"],
                    AuditEvent.action == "identity.step_up_in_person_refused",
                )
            )
        ).all()
    assert len(refusals) == len(recorded)
    assert {e.actor_id for e in refusals} == {agent.id, other_agent.id}
