"""Real name (L2) through the API: the match, malformed numbers, failures recorded and rate-limited."""

from __future__ import annotations

import datetime as dt

import pytest
from identity_api_helpers import (
    API,
    me,
    problem,
    real_name,
)

from app_api.platform.datahub.citizen_id import make


async def test_real_name_raises_the_level_to_2_and_masks(client, login, person_factory) -> None:
    headers = await login()
    name, number = await person_factory("张建国", None)
    r = await real_name(client, headers, name, number.lower() if number.endswith("X") else number)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identity_level"] == 2
    assert body["real_name"] == "张**" and number not in r.text and body["id_number"].endswith(number[-4:])
    view = await me(client, headers)
    assert view["identity_level"] == 2
    assert [h["outcome"] for h in view["history"]] == ["passed"]
    assert any(c["purpose"] == "identity.real_name" for c in view["consents"])
    problem(await real_name(client, headers, name, number), 409, "identity.real_name_already_verified")
    # The same number cannot verify a second account.
    other = await login()
    problem(await real_name(client, other, name, number), 409, "identity.id_number_taken")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("34160219580312001", "18位"),  # 17 digits
        ("341602195803120131", "校验位"),  # wrong check digit
        ("991602195803120135", "地区码"),  # no such province
        ("341602195802300135", "出生日期"),  # 30 February
        ("341602209912310135", "出生日期"),  # born in the future
    ],
)
async def test_malformed_citizen_id_is_refused_before_any_lookup(client, login, number, reason) -> None:
    headers = await login()
    body = problem(await real_name(client, headers, "张建国", number), 422, "identity.id_number_invalid")
    assert reason in body["detail"]
    assert (await me(client, headers))["history"] == []


async def test_wrong_name_fails_is_recorded_and_rate_limited(client, login, person_factory, session) -> None:
    headers = await login()
    _name, number = await person_factory("王小明", None)
    body = problem(await real_name(client, headers, "王大明", number), 422, "identity.real_name_mismatch")
    assert body["attempts_left"] == 4
    # An unknown number gets the same answer (no probing of which numbers exist).
    unknown = make("341602", dt.date(1990, 1, 1), 998)
    problem(await real_name(client, headers, "王小明", unknown), 422, "identity.real_name_mismatch")
    # The failures were committed although the requests failed: history and audit keep them.
    view = await me(client, headers)
    assert view["identity_level"] == 1
    assert [h["code"] for h in view["history"]] == ["identity.real_name_mismatch"] * 2
    for _ in range(3):
        problem(await real_name(client, headers, "王大明", number), 422, "identity.real_name_mismatch")
    r = await real_name(client, headers, "王小明", number)
    problem(r, 429, "identity.real_name_rate_limited")
    assert int(r.headers["retry-after"]) > 0


async def test_real_name_needs_agreement_and_login(client, login) -> None:
    headers = await login()
    r = await client.post(
        f"{API}/real-name",
        json={"name": "张建国", "id_number": "341602195803120135", "agree": False},
        headers=headers,
    )
    problem(r, 422, "identity.consent_not_given")
    problem(await client.get(f"{API}/me"), 401, "auth.unauthorized")
