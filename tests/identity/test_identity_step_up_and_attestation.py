"""Step-up tokens on a guarded endpoint, and the agent's in-person attestation (L3 without a face)."""

from __future__ import annotations

import secrets

from identity_api_helpers import (
    API,
    account_id,
    genuine_resident,
    me,
    problem,
    reach_l3,
    real_name,
)

from app_api.core.redis import get_redis


async def test_step_up_token_is_single_use_and_bound_to_its_purpose(
    client, login, person_factory, fix_steps
) -> None:
    guarded = "/api/v1/test-only/loan-apply"
    headers = await genuine_resident(client, login, person_factory)
    problem(await client.post(guarded, headers=headers), 403, "identity.step_up_required")
    wrong = (await reach_l3(client, headers, fix_steps, purpose="fund.withdraw")).json()
    problem(
        await client.post(guarded, headers={**headers, "X-Step-Up-Token": wrong["step_up_token"]}),
        403,
        "identity.step_up_invalid",
    )
    # Second check: the registry photo's kept encoding stands in for decoding the photo again.
    ok = (await reach_l3(client, headers, fix_steps, purpose="loan.apply")).json()
    token = {**headers, "X-Step-Up-Token": ok["step_up_token"]}
    other = await login()
    problem(
        await client.post(guarded, headers={**other, "X-Step-Up-Token": ok["step_up_token"]}),
        403,
        "identity.step_up_invalid",
    )
    r = await client.post(guarded, headers=token)
    assert r.status_code == 200, r.text
    assert r.json()["applied_by"] == await account_id(client, headers)
    problem(await client.post(guarded, headers=token), 403, "identity.step_up_invalid")
    aid = await account_id(client, headers)
    redis = await get_redis()
    keys = [k async for k in redis.scan_iter(match=f"identity:stepup:{aid}:*")]
    # Only the unused fund.withdraw token is left, expiring within 5 minutes.
    assert len(keys) == 1 and b"fund.withdraw" in keys[0] and 0 < await redis.ttl(keys[0]) <= 300


async def test_agent_attests_in_person_at_a_station(client, login, person_factory, session) -> None:
    phone = "137" + f"{secrets.randbelow(10**8):08d}"
    resident = await login(phone)
    name, number = await person_factory("刘芳", None)
    assert (await real_name(client, resident, name, number)).status_code == 200
    agent = await login(roles=["agent"], station_id="changshu")
    body = {"resident_phone": phone, "id_number": number, "name": name, "resident_agreed": True}
    wrong = {**body, "name": "刘芬"}
    problem(
        await client.post(f"{API}/agent/attestations", json=wrong, headers=agent),
        422,
        "identity.attestation_mismatch",
    )
    r = await client.post(f"{API}/agent/attestations", json=body, headers=agent)
    assert r.status_code == 201, r.text
    assert r.json()["station_id"] == "changshu"
    view = await me(client, resident)
    assert view["identity_level"] == 3
    assert [(h["kind"], h["outcome"], h["station_id"]) for h in view["history"][:2]] == [
        ("agent_attestation", "passed", "changshu"),
        ("agent_attestation", "failed", "changshu"),
    ]
    assert any(
        c["purpose"] == "identity.agent_attestation" and c["granted_via"] == "agent" for c in view["consents"]
    )


async def test_attestation_only_by_station_agents_for_l2_residents(client, login, person_factory) -> None:
    phone = "137" + f"{secrets.randbelow(10**8):08d}"
    await login(phone)
    body = {
        "resident_phone": phone,
        "id_number": "341602195803120135",
        "name": "张建国",
        "resident_agreed": True,
    }
    resident_caller = await login()
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=resident_caller),
        403,
        "auth.forbidden",
    )
    no_station = await login(roles=["agent"])
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=no_station),
        403,
        "identity.agent_station_required",
    )
    agent = await login(roles=["agent"], station_id="yiwu")
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=agent),
        422,
        "identity.resident_not_real_name",
    )
    problem(
        await client.post(
            f"{API}/agent/attestations", json={**body, "resident_agreed": False}, headers=agent
        ),
        422,
        "identity.consent_not_given",
    )
