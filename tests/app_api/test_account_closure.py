"""A resident closes their account (注销账户, PIPL right to deletion): refused with the reason while an
application is in progress; otherwise every login ends, what serves only them is deleted, what the law
keeps is kept detached from their identity (with the reason in the receipt), and the same phone and ID
number can start afresh."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import sqlalchemy as sa
from sqlmodel import SQLModel, select

from app_api.core.db import sessionmaker
from app_api.core.redis import get_redis
from app_api.platform.accounts import closure
from app_api.platform.accounts.models import Account
from app_api.platform.audit.models import AuditEvent
from app_api.platform.audit.service import verify_chain
from tests.app_api.agents_helpers import gov_catalogue  # noqa: F401  (an autouse fixture)
from tests.app_api.test_data_export import _tied
from tests.columns.gov_services.conftest import API, Resident, make_staff
from tests.columns.gov_services.rules_helpers import born_years_ago, prefilled_draft, resident_born
from tests.conftest import LoginFn, real_login, sms_code

OLD_AGE = "BZ-MZ-001"  # 老年人优待证: waits for the department after submission
CJK = re.compile(r"[\u4e00-\u9fff]")


async def _code(client: httpx.AsyncClient, phone: str) -> str:
    """A fresh SMS code for ``phone`` (as if the resident waited out the minute's resend cooldown)."""
    await (await get_redis()).delete(f"sms:cool:{phone}")
    resp = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert resp.status_code == 202, resp.text
    return await sms_code(client, phone)


async def _account(account_id: str) -> Account:
    async with sessionmaker()() as s:
        account = await s.get(Account, account_id)
        assert account is not None
        return account


async def _rows(table: str, **where: Any) -> list[dict[str, Any]]:
    t = SQLModel.metadata.tables[table]
    async with sessionmaker()() as s:
        conn = await s.connection()
        rows = (await conn.execute(sa.select(t).where(*(t.c[k] == v for k, v in where.items())))).all()
    return [dict(r._mapping) for r in rows]


async def test_every_table_tied_to_an_account_says_what_closing_does_to_it(app: Any) -> None:
    tables = SQLModel.metadata.tables
    tied = closure.tied_tables() | {name for name, t in tables.items() if _tied(t)}
    missing = sorted(tied - set(closure.POLICY))
    assert not missing, f"tables tied to an account with no closure policy: {missing}"
    for name, policy in closure.POLICY.items():
        assert name in tables, f"closure policy for a table that does not exist: {name}"
        assert CJK.search(policy.reason), (name, policy.reason)
        if isinstance(policy, closure.Retain):
            for c in filter(None, (policy.withdraw, policy.busy and policy.busy.column)):
                assert c in tables[name].c, (name, c)
            if policy.drafts:
                assert set(policy.drafts.erase) <= set(tables[name].c.keys()), name

    # The states that block closing are the columns' own (a renamed status would silently stop
    # blocking).
    from columns.gov_services import models as gov
    from columns.loans.models import OPEN as LOAN_OPEN
    from columns.loans.models import Status as LoanStatus
    from columns.provident_fund.models import WithdrawalStatus
    from payments.models import PENDING, RefundStatus

    def busy(table: str) -> set[str]:
        p = closure.POLICY[table]
        assert isinstance(p, closure.Retain) and p.busy is not None
        return set(p.busy.states)

    assert busy("gov_services_application") == {*gov.OPEN_STATES, gov.AWAITING_PAYMENT, gov.POSTED}
    assert busy("gov_services_bundle_application") == {gov.BUNDLE_PROCESSING}
    assert busy("loans_application") == {*LOAN_OPEN, LoanStatus.APPROVED}
    assert busy("payments_order") == set(PENDING)
    assert busy("payments_refund") == {RefundStatus.REQUESTED, RefundStatus.PROCESSING}
    assert busy("provident_fund_withdrawal") == {WithdrawalStatus.SUBMITTING}


async def _submitted(client: httpx.AsyncClient, login: LoginFn) -> tuple[Resident, str]:
    r = await resident_born(client, login, birth=born_years_ago(66))
    app_id = await prefilled_draft(client, r, OLD_AGE)
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "submitted", resp.text
    return r, app_id


async def test_closing_is_refused_while_an_application_is_in_progress_and_allowed_once_it_ends(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r, app_id = await _submitted(client, login)
    code = await _code(client, r.phone)

    resp = await client.post("/api/v1/me/closure", json={"code": code}, headers=r.headers)
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "accounts.closure_in_progress"
    assert problem["title"] == "您有正在办理的业务，暂不能注销账户"
    assert problem["reasons"] == ["政务服务申请：1 件正在办理"]
    # Nothing changed: still signed in, the application still in the department's hands.
    assert (await client.get("/api/v1/me", headers=r.headers)).status_code == 200
    assert (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()[
        "status"
    ] == "submitted"

    resp = await client.post(f"{API}/applications/{app_id}/withdraw", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    # The code was not spent by the refusal: the resident goes on with it.
    resp = await client.post("/api/v1/me/closure", json={"code": code}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    receipt = resp.json()
    kept = {t["table"]: t for t in receipt["retained"]}
    # The withdrawn application stays in the department's archive, with the reason.
    assert kept["gov_services_application"]["rows"] == 1
    assert "归档保存" in kept["gov_services_application"]["reason"]
    (row,) = await _rows("gov_services_application", id=app_id)
    assert row["status"] == "withdrawn" and row["applicant_id"] == r.account_id


async def test_a_closed_account_signs_out_everywhere_forgets_the_person_and_keeps_what_the_law_requires(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(70))
    draft = await prefilled_draft(client, r, OLD_AGE)  # consent, registry reads, e-certificates
    resp = await client.patch(
        "/api/v1/me/notification-settings", json={"quiet_hours_enabled": False}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    await (await get_redis()).delete(f"sms:cool:{r.phone}")
    second_login = await real_login(client, r.phone)  # another device
    refresh_login = await client.post(
        "/api/v1/auth/login", json={"phone": r.phone, "code": await _code(client, r.phone)}
    )
    refresh_token = refresh_login.json()["refresh_token"]

    resp = await client.post(
        "/api/v1/me/closure", json={"code": await _code(client, r.phone)}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    receipt = resp.json()
    deleted = {t["table"]: t["rows"] for t in receipt["deleted"]}
    kept = {t["table"]: t["reason"] for t in receipt["retained"]}
    assert deleted["app_notify_preference"] == 1
    assert deleted["app_refresh_token"] >= 3  # one per sign-in
    assert receipt["revoked_logins"] >= 3
    assert receipt["withdrawn"]["app_consent"] >= 1
    assert "网络安全法" in kept["app_datahub_access"]
    assert all(CJK.search(t["reason"]) for t in receipt["deleted"] + receipt["retained"])

    # Every sign-in ended at once, refresh tokens too.
    for headers in (r.headers, second_login):
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert resp.status_code == 401, resp.text

    # The person is gone from the account row; the lookup keys are free.
    account = await _account(r.account_id)
    assert not account.is_active and account.roles == []
    assert account.real_name_enc is None and account.id_number_enc is None
    assert account.id_number_hash is None and account.password_hash is None
    assert account.phone == "" and account.phone_hash == f"closed:{r.account_id}"
    # The never-filed draft is cancelled and its form erased; the consent is withdrawn, kept as evidence.
    (row,) = await _rows("gov_services_application", id=draft)
    assert row["status"] == "cancelled" and row["form_enc"] is None
    consents = await _rows("app_consent", account_id=r.account_id)
    assert consents and all(c["withdrawn_at"] is not None for c in consents)
    assert await _rows("app_notify_preference", account_id=r.account_id) == []
    assert await _rows("app_refresh_token", account_id=r.account_id) == []

    # The same phone starts afresh: a new account that sees none of the old one's data, and the
    # same ID number can be verified on it.
    await (await get_redis()).delete(f"sms:cool:{r.phone}")
    fresh = await real_login(client, r.phone)
    me = (await client.get("/api/v1/me", headers=fresh)).json()
    assert me["id"] != r.account_id and me["real_name"] is None
    mine = (await client.get(f"{API}/applications", headers=fresh)).json()
    assert draft not in str(mine)
    export = (await client.get("/api/v1/me/export", headers=fresh)).json()
    assert r.account_id not in str(export["tables"]) and r.id_number not in str(export["tables"])
    from app_api.platform.datahub.service import id_hash

    async with sessionmaker()() as s:
        new = await s.get(Account, me["id"])
        assert new is not None
        new.id_number_hash = id_hash(r.id_number)
        s.add(new)
        await s.commit()

        audited = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "accounts.closed", AuditEvent.subject_id == r.account_id
                )
            )
        ).all()
        assert len(audited) == 1
        assert audited[0].data["deleted"]["app_notify_preference"] == 1
        assert r.phone not in str(audited[0].data) and r.id_number not in str(audited[0].data)
        assert (await verify_chain(s)).ok


async def test_a_wrong_code_closes_nothing_and_two_closures_with_one_code_close_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    r = await resident_born(client, login, birth=born_years_ago(45))
    code = await _code(client, r.phone)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    resp = await client.post("/api/v1/me/closure", json={"code": wrong}, headers=r.headers)
    assert resp.status_code == 400 and resp.json()["code"] == "auth.code_invalid", resp.text
    assert (await _account(r.account_id)).is_active
    for bad in ({}, {"code": "12345"}, {"code": "１２３４５６"}, {"code": code, "extra": 1}):
        resp = await client.post("/api/v1/me/closure", json=bad, headers=r.headers)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert (await _account(r.account_id)).is_active

    results = await asyncio.gather(
        *(client.post("/api/v1/me/closure", json={"code": code}, headers=r.headers) for _ in range(2))
    )
    codes = sorted(x.status_code for x in results)
    assert codes[0] == 200 and codes[1] in {400, 401, 404}, [x.text for x in results]
    async with sessionmaker()() as s:
        audited = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "accounts.closed", AuditEvent.subject_id == r.account_id
                )
            )
        ).all()
    assert len(audited) == 1


async def test_staff_cannot_close_their_own_account(client: httpx.AsyncClient, login: LoginFn) -> None:
    headers, staff_id = await make_staff(client, login, department="谯城区民政局")
    account = await _account(staff_id)
    code = await _code(client, account.phone)
    resp = await client.post("/api/v1/me/closure", json={"code": code}, headers=headers)
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "accounts.closure_staff"
    assert (await _account(staff_id)).is_active
