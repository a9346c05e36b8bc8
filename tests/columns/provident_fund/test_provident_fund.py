"""Provident fund end to end against the center sandbox: L2 gate, summary, contributions, loans,
the estimate with the rule used, and withdrawals behind an L3 step-up."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from typing import Any

from columns.provident_fund.sandbox.center import Person
from tests.citizens import new_id_number

API = "/api/v1/columns/provident_fund"


async def real_named(
    client: Any,
    login: Any,
    center: Any,
    *,
    level: int = 2,
    balance_fen: int = 3_000_000,
    base_fen: int = 600_000,
    status: str = "正常缴存",
) -> tuple[dict[str, str], str, Person]:
    from app_api.core.crypto import encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.service import id_hash

    headers = await login(level=level)
    number = new_id_number("341602", dt.date(1985, 3, 14))
    me = (await client.get("/api/v1/me", headers=headers)).json()
    async with session_scope() as s:
        account = await s.get(Account, me["id"])
        assert account is not None
        account.real_name_enc = encrypt_str("孙晓梅", aad="name")
        account.id_number_enc = encrypt_str(number, aad="id_number")
        account.id_number_hash = id_hash(number)
        s.add(account)
    person = center.add_person(
        Person(
            id_number=number,
            name="孙晓梅",
            account_no=f"GJJ{secrets.randbelow(10**9):09d}",
            employer="亳州市古井镇某酒业有限公司",
            base_fen=base_fen,
            balance_fen=balance_fen,
            status=status,
        )
    )
    return headers, me["id"], person


async def test_level_two_needed(client, login, center):
    headers = await login()  # L1: phone only
    r = await client.get(f"{API}/account", headers=headers)
    assert r.status_code == 403
    body = r.json()
    assert body["code"] == "identity.level_required" and body["level_required"] == 2
    assert "L2" in body["detail"]


async def test_summary_contributions_loans(client, login, center):
    headers, _, person = await real_named(client, login, center)
    person.loans = [
        {
            "loan_no": "DK2023001",
            "principal_fen": 40_000_000,
            "outstanding_fen": 36_512_000,
            "annual_rate": "2.60",
            "term_months": 360,
            "monthly_payment_fen": 160_141,
            "next_due_on": "2026-12-20",
            "status": "正常还款",
        }
    ]
    summary = (await client.get(f"{API}/account", headers=headers)).json()
    assert summary["balance_fen"] == 3_000_000 and summary["monthly_fen"] == 144_000
    assert summary["holder_masked"] == "孙**" and summary["employer"].startswith("亳州市")
    assert summary["status"] == "正常缴存"

    page = (await client.get(f"{API}/contributions", params={"months": 6}, headers=headers)).json()
    assert len(page["items"]) == 6 and all(i["total_fen"] == 144_000 for i in page["items"])
    assert page["total_fen"] == 6 * 144_000
    months = [i["month"] for i in page["items"]]
    assert months == sorted(months, reverse=True)

    [loan] = (await client.get(f"{API}/loans", headers=headers)).json()
    assert loan["outstanding_fen"] == 36_512_000 and loan["next_due_on"] == "2026-12-20"


async def test_estimate_shows_rule_and_binding_limit(client, login, center):
    headers, _, _ = await real_named(client, login, center, balance_fen=3_000_000, base_fen=600_000)
    r = await client.post(
        f"{API}/loan-estimate", headers=headers, json={"house_price_fen": 100_000_000, "term_years": 30}
    )
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["rule"]["rule_id"] == "BZGJJ-DK-2025-01" and e["rule"]["published_on"] == "2025-05-08"
    assert e["annual_rate"] == "2.60%"
    limits = {x["name"]: x["amount_fen"] for x in e["limits"]}
    assert limits["缴存余额倍数"] == 45_000_000 and limits["最高贷款额度"] == 50_000_000
    assert limits["房价比例"] == 80_000_000
    assert e["binding_limit"] == "缴存余额倍数" and e["max_loan_fen"] == 45_000_000
    r_m = 0.026 / 12
    expected = 45_000_000 * r_m * (1 + r_m) ** 360 / ((1 + r_m) ** 360 - 1)
    assert abs(e["monthly_payment_fen"] - expected) <= 1
    # income cap: payment of half of 6000 yuan at 2.6 % over 30 years
    assert abs(limits["还款能力"] - 300_000 * ((1 + r_m) ** 360 - 1) / (r_m * (1 + r_m) ** 360)) <= 1

    # Second home, short term: the other rate and loan-to-price ratio.
    e2 = (
        await client.post(
            f"{API}/loan-estimate",
            headers=headers,
            json={"house_price_fen": 20_000_000, "term_years": 5, "first_home": False},
        )
    ).json()
    assert (
        e2["annual_rate"] == "2.525%"
        and e2["binding_limit"] == "房价比例"
        and e2["max_loan_fen"] == 14_000_000
    )

    too_long = await client.post(
        f"{API}/loan-estimate", headers=headers, json={"house_price_fen": 100_000_000, "term_years": 35}
    )
    assert too_long.status_code == 422 and too_long.json()["code"] == "provident_fund.estimate_invalid"


async def test_estimate_refused_for_sealed_account(client, login, center):
    headers, _, _ = await real_named(client, login, center, status="封存")
    r = await client.post(
        f"{API}/loan-estimate", headers=headers, json={"house_price_fen": 1_000_000, "term_years": 10}
    )
    assert r.status_code == 422 and "连续缴存" in r.json()["detail"]


async def test_withdrawal_needs_step_up(client, login, center, phone):
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import raise_level
    from identity.step_up import issue_step_up

    headers, account_id, _person = await real_named(client, login, center)
    body = {"reason": "租房", "amount_fen": 1_200_000, "bank_account": "6217001234567890123"}

    missing = await client.post(f"{API}/withdrawals", headers=headers, json=body)
    assert missing.status_code == 403 and missing.json()["code"] == "identity.step_up_required"
    token = await issue_step_up(account_id, "provident_fund.withdraw")
    at_l2 = await client.post(f"{API}/withdrawals", headers={**headers, "X-Step-Up-Token": token}, json=body)
    assert at_l2.status_code == 403 and at_l2.json()["code"] == "identity.step_up_invalid"

    async with session_scope() as s:
        await raise_level(s, account_id, 3, reason="test")
    other_purpose = await issue_step_up(account_id, "loans.apply")
    wrong = await client.post(
        f"{API}/withdrawals", headers={**headers, "X-Step-Up-Token": other_purpose}, json=body
    )
    assert wrong.status_code == 403 and wrong.json()["code"] == "identity.step_up_invalid"

    token = await issue_step_up(account_id, "provident_fund.withdraw")
    too_much = await client.post(
        f"{API}/withdrawals",
        headers={**headers, "X-Step-Up-Token": token},
        json={**body, "amount_fen": 3_000_001},
    )
    assert too_much.status_code == 422 and too_much.json()["code"] == "provident_fund.withdrawal_refused"
    assert (await client.get(f"{API}/withdrawals", headers=headers)).json() == []

    token = await issue_step_up(account_id, "provident_fund.withdraw")
    ok = await client.post(f"{API}/withdrawals", headers={**headers, "X-Step-Up-Token": token}, json=body)
    assert ok.status_code == 202, ok.text
    w = ok.json()
    assert w["status"] == "submitting" and w["bank_account_masked"] == "6217 **** **** 0123"
    replay = await client.post(f"{API}/withdrawals", headers={**headers, "X-Step-Up-Token": token}, json=body)
    assert replay.status_code == 403 and replay.json()["code"] == "identity.step_up_invalid"

    for _ in range(100):
        got = (await client.get(f"{API}/withdrawals/{w['id']}", headers=headers)).json()
        if got["status"] != "submitting":
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "accepted" and got["application_no"].startswith("TQ")
    assert [x for x in center.withdrawals.values() if x["amount_fen"] == 1_200_000]
    other = await login()
    assert (await client.get(f"{API}/withdrawals/{w['id']}", headers=other)).status_code in (403, 404)


async def test_center_down_and_unknown_person(client, login, center):
    headers, _, _ = await real_named(client, login, center)
    center.fail_next(1)
    r = await client.get(f"{API}/account", headers=headers)
    assert r.status_code == 502 and r.json()["code"] == "provident_fund.center_unavailable"
    assert (await client.get(f"{API}/account", headers=headers)).status_code == 200

    stranger = await login(level=2)
    from app_api.core.crypto import encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.citizen_id import make

    me = (await client.get("/api/v1/me", headers=stranger)).json()
    async with session_scope() as s:
        a = await s.get(Account, me["id"])
        assert a is not None
        a.id_number_enc = encrypt_str(make("341621", dt.date(1990, 1, 1), 7), aad="id_number")
        s.add(a)
    r = await client.get(f"{API}/account", headers=stranger)
    assert r.status_code == 404 and r.json()["code"] == "provident_fund.account_not_found"


async def test_withdrawal_survives_the_center_being_down(client, login, center):
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import raise_level
    from identity.step_up import issue_step_up

    headers, account_id, person = await real_named(client, login, center, balance_fen=800_000)
    async with session_scope() as s:
        await raise_level(s, account_id, 3, reason="test")
    before = len(center.withdrawals)
    center_calls = center.calls
    center.fail_next(2, path="/v1/withdrawals")
    r = await client.post(
        f"{API}/withdrawals",
        headers={
            **headers,
            **{"X-Step-Up-Token": await issue_step_up(account_id, "provident_fund.withdraw")},
        },
        json={"reason": "还贷", "amount_fen": 500_000, "bank_account": "6228480402564890018"},
    )
    assert r.status_code == 202
    # The application is recorded at once; its submission meets a busy center twice, then gets through.
    assert r.json()["status"] == "submitting"
    w = r.json()
    for _ in range(400):
        got = (await client.get(f"{API}/withdrawals/{w['id']}", headers=headers)).json()
        if got["status"] != "submitting":
            break
        await asyncio.sleep(0.05)
    assert got["status"] == "accepted", got
    assert len(center.withdrawals) == before + 1 and center.calls == center_calls + 4
    assert person.account_no
