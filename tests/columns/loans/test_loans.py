"""The loans marketplace end to end: products, applications with an L3 step-up and consent to one
institution, officers of that institution only, review to disbursement, statistics."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest

from tests.citizens import new_id_number

API = "/api/v1/columns/loans"


async def admin_headers(login: Any) -> dict[str, str]:
    return await login(roles=["admin"])


async def institution(client: Any, login: Any, name: str) -> tuple[str, dict[str, str]]:
    admin = await admin_headers(login)
    code = "bank_" + secrets.token_hex(4)
    r = await client.post(
        f"{API}/admin/institutions", headers=admin, json={"code": code, "name": name, "kind": "bank"}
    )
    assert r.status_code == 201, r.text
    inst = r.json()["id"]
    officer = await login(roles=["bank_officer"], institution_id=inst)
    return inst, officer


async def product(client: Any, officer: dict[str, str], **over: Any) -> dict[str, Any]:
    body = {
        "name": "安居贷",
        "min_amount_fen": 1_000_000,
        "max_amount_fen": 30_000_000,
        "min_term_months": 6,
        "max_term_months": 60,
        "min_rate_bp": 345,
        "max_rate_bp": 600,
        "applicant_types": ["individual"],
        "materials": ["身份证", "收入证明"],
        **over,
    }
    r = await client.post(f"{API}/officer/products", headers=officer, json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def applicant(client: Any, login: Any, *, level: int = 3) -> tuple[dict[str, str], str, str]:
    from app_api.core.crypto import encrypt_str
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account

    headers = await login(level=level)
    me = (await client.get("/api/v1/me", headers=headers)).json()
    number = new_id_number("341623", dt.date(1979, 8, 2))
    async with session_scope() as s:
        a = await s.get(Account, me["id"])
        assert a is not None
        a.real_name_enc = encrypt_str("周永刚", aad="name")
        a.id_number_enc = encrypt_str(number, aad="id_number")
        s.add(a)
    return headers, me["id"], number


async def step_up(account_id: str, purpose: str = "loans.apply") -> dict[str, str]:
    from identity.step_up import issue_step_up

    return {"X-Step-Up-Token": await issue_step_up(account_id, purpose)}


def application(product_id: str, **over: Any) -> dict[str, Any]:
    return {
        "product_id": product_id,
        "amount_fen": 20_000_000,
        "term_months": 36,
        "purpose": "购买家用轿车",
        "consent": {"scopes": ["identity.name", "identity.id_number", "contact.phone"], "agreed": True},
        **over,
    }


async def test_apply_review_approve_disburse(client, login):
    inst, officer = await institution(client, login, "亳州药都农村商业银行")
    p = await product(client, officer)
    listed = (await client.get(f"{API}/products", params={"institution_id": inst})).json()
    assert [x["id"] for x in listed] == [p["id"]] and listed[0]["shared_data_names"] == [
        "姓名",
        "身份证号码",
        "手机号码",
    ]

    headers, account_id, number = await applicant(client, login)
    r = await client.post(
        f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=application(p["id"])
    )
    assert r.status_code == 201, r.text
    app = r.json()
    assert app["status"] == "submitted" and app["institution_name"] == "亳州药都农村商业银行"

    consents = (await client.get("/api/v1/me/consents", headers=headers)).json()["consents"]
    [c] = [c for c in consents if c["purpose"] == "loans.apply"]
    assert c["grantee"] == inst and "亳州药都农村商业银行" in c["text"] and c["active"]

    seen = (await client.get(f"{API}/officer/applications/{app['id']}", headers=officer)).json()
    assert seen["applicant"] == {
        "consent_valid": True,
        "name": "周永刚",
        "id_number": number,
        "phone": seen["applicant"]["phone"],
        "business_name": None,
        "business_credit_code": None,
    }
    assert seen["applicant"]["phone"].startswith("139")

    async def act(action: str, **body: Any) -> Any:
        return await client.post(
            f"{API}/officer/applications/{app['id']}/{action}", headers=officer, json=body or None
        )

    early = await act("approve", amount_fen=20_000_000, rate_bp=400, term_months=36)
    assert early.status_code == 409 and early.json()["code"] == "loans.illegal_transition"
    assert (await act("accept")).json()["status"] == "accepted"
    assert (await act("request-info", text="请上传近6个月银行流水")).json()["status"] == "info_requested"
    mine = (await client.get(f"{API}/applications/{app['id']}", headers=headers)).json()
    assert mine["status"] == "info_requested" and mine["info_request"] == "请上传近6个月银行流水"
    r = await client.post(
        f"{API}/applications/{app['id']}/supplement",
        headers=headers,
        json={"text": "已在网点提交流水，编号LS2026"},
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted"

    high = await act("approve", amount_fen=18_000_000, rate_bp=720, term_months=36)
    assert high.status_code == 422 and high.json()["code"] == "loans.rate_out_of_range"
    big = await act("approve", amount_fen=40_000_000, rate_bp=450, term_months=36)
    assert big.status_code == 422 and big.json()["code"] == "loans.amount_out_of_range"
    ok = await act("approve", amount_fen=18_000_000, rate_bp=450, term_months=36)
    assert ok.status_code == 200 and ok.json()["approved_amount_fen"] == 18_000_000
    over = await act("disburse", amount_fen=18_000_001)
    assert over.status_code == 422
    done = await act("disburse", amount_fen=18_000_000)
    assert done.json()["status"] == "disbursed" and done.json()["disbursed_fen"] == 18_000_000
    again = await act("disburse", amount_fen=18_000_000)
    assert again.status_code == 409

    mine = (await client.get(f"{API}/applications/{app['id']}", headers=headers)).json()
    assert [e["action"] for e in mine["events"]] == [
        "submit",
        "accept",
        "request_info",
        "supplement",
        "approve",
        "disburse",
    ]
    from sqlmodel import select

    from app_api.core.db import session_scope
    from app_api.platform.notify import Notification

    async with session_scope() as s:
        texts = [
            n.text
            for n in (
                await s.exec(
                    select(Notification).where(
                        Notification.account_id == account_id, Notification.template == "loans.status_changed"
                    )
                )
            ).all()
        ]
    assert (
        len(texts) == 4
    )  # accepted, info requested, approved, disbursed (not the resident's own supplement)
    assert any("已放款" in t and "放款180000元" in t for t in texts)
    assert any("需补充材料" in t and "银行流水" in t for t in texts)

    stats = (await client.get(f"{API}/officer/statistics", headers=officer)).json()
    assert stats["applications"] == 1 and stats["approvals"] == 1 and stats["disbursements"] == 1
    assert stats["disbursed_fen"] == 18_000_000 and stats["registered_applicants"] == 1
    assert [i["institution_id"] for i in stats["institutions"]] == [inst]
    public = (await client.get(f"{API}/statistics/summary")).json()
    assert public["disbursed_fen"] >= 18_000_000 and public["institutions"] == []


async def test_officer_sees_only_own_institution(client, login):
    inst_a, officer_a = await institution(client, login, "徽商银行亳州分行")
    _, officer_b = await institution(client, login, "亳州市融资担保有限公司")
    p = await product(client, officer_a)
    headers, account_id, _ = await applicant(client, login)
    app = (
        await client.post(
            f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=application(p["id"])
        )
    ).json()

    listed_b = (await client.get(f"{API}/officer/applications", headers=officer_b)).json()
    assert app["id"] not in [x["id"] for x in listed_b["items"]]
    r = await client.get(f"{API}/officer/applications/{app['id']}", headers=officer_b)
    assert r.status_code == 404 and r.json()["code"] == "loans.application_not_found"
    for action, body in (
        ("accept", None),
        ("reject", {"reason": "不符合条件"}),
        ("approve", {"amount_fen": 2_000_000, "rate_bp": 400, "term_months": 12}),
    ):
        r = await client.post(
            f"{API}/officer/applications/{app['id']}/{action}", headers=officer_b, json=body
        )
        assert r.status_code == 404, (action, r.text)
    assert (await client.get(f"{API}/officer/applications/{app['id']}", headers=officer_a)).json()[
        "status"
    ] == "submitted"
    stats_b = (await client.get(f"{API}/officer/statistics", headers=officer_b)).json()
    assert stats_b["applications"] == 0

    nobody = await login(roles=["bank_officer"])
    r = await client.get(f"{API}/officer/applications", headers=nobody)
    assert r.status_code == 403 and r.json()["code"] == "loans.not_an_officer"
    assert (await client.get(f"{API}/officer/applications", headers=headers)).status_code == 403
    assert inst_a


async def test_application_refusals_write_nothing(client, login):
    _, officer = await institution(client, login, "中国邮政储蓄银行亳州分行")
    p = await product(client, officer)
    headers, account_id, _ = await applicant(client, login)

    r = await client.post(f"{API}/applications", headers=headers, json=application(p["id"]))
    assert r.status_code == 403 and r.json()["code"] == "identity.step_up_required"
    cases = [
        (application(p["id"], amount_fen=500_000), 422, "loans.amount_out_of_range"),
        (application(p["id"], amount_fen=30_000_001), 422, "loans.amount_out_of_range"),
        (application(p["id"], term_months=72), 422, "loans.term_out_of_range"),
        (
            application(
                p["id"],
                applicant_type="business",
                business_name="亳州某药材有限公司",
                business_credit_code="91341600MA2N0XXX1Y",
            ),
            422,
            "loans.applicant_type_not_allowed",
        ),
        (
            application(p["id"], consent={"scopes": ["identity.name"], "agreed": True}),
            422,
            "loans.consent_scope_missing",
        ),
        (
            application(p["id"], consent={"scopes": ["identity.name"], "agreed": False}),
            422,
            "app.validation_failed",
        ),
        (application("0" * 32), 404, "loans.product_not_found"),
    ]
    for body, status, code in cases:
        r = await client.post(
            f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=body
        )
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert (await client.get(f"{API}/applications", headers=headers)).json() == []
    consents = (await client.get("/api/v1/me/consents", headers=headers)).json()["consents"]
    assert [c for c in consents if c["purpose"] == "loans.apply"] == []

    low, low_id, _ = await applicant(client, login, level=2)
    r = await client.post(
        f"{API}/applications", headers={**low, **await step_up(low_id)}, json=application(p["id"])
    )
    assert r.status_code == 403 and r.json()["code"] == "identity.step_up_invalid"


@pytest.mark.parametrize("how", ["consent", "withdraw"])
async def test_withdrawn_consent_hides_data(client, login, how):
    _, officer = await institution(client, login, "亳州皖北村镇银行")
    p = await product(client, officer, applicant_types=["individual", "business"])
    assert "business.registration" in p["shared_data"]
    headers, account_id, _ = await applicant(client, login)
    body = application(
        p["id"],
        applicant_type="business",
        business_name="亳州华佗中药饮片有限公司",
        business_credit_code="91341600MA2N0ABC1Y",
        consent={
            "scopes": ["identity.name", "identity.id_number", "contact.phone", "business.registration"],
            "agreed": True,
        },
    )
    app = (
        await client.post(f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=body)
    ).json()
    seen = (await client.get(f"{API}/officer/applications/{app['id']}", headers=officer)).json()
    assert seen["applicant"]["business_credit_code"] == "91341600MA2N0ABC1Y"
    if how == "consent":
        [c] = [
            c
            for c in (await client.get("/api/v1/me/consents", headers=headers)).json()["consents"]
            if c["purpose"] == "loans.apply"
        ]
        assert (await client.delete(f"/api/v1/me/consents/{c['id']}", headers=headers)).status_code == 200
    else:
        r = await client.post(f"{API}/applications/{app['id']}/withdraw", headers=headers)
        assert r.json()["status"] == "withdrawn"
    hidden = (await client.get(f"{API}/officer/applications/{app['id']}", headers=officer)).json()
    assert hidden["applicant"] == {
        "consent_valid": False,
        "name": None,
        "id_number": None,
        "phone": None,
        "business_name": None,
        "business_credit_code": None,
    }
    stats = (await client.get(f"{API}/officer/statistics", headers=officer)).json()
    assert stats["business_applicants"] == 1


async def test_concurrent_disbursements_move_once(client, login):
    import asyncio

    _, officer = await institution(client, login, "亳州农商银行蒙城支行")
    p = await product(client, officer)
    headers, account_id, _ = await applicant(client, login)
    app = (
        await client.post(
            f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=application(p["id"])
        )
    ).json()
    base = f"{API}/officer/applications/{app['id']}"
    await client.post(f"{base}/accept", headers=officer)
    await client.post(
        f"{base}/approve", headers=officer, json={"amount_fen": 5_000_000, "rate_bp": 400, "term_months": 24}
    )
    results = await asyncio.gather(
        *(client.post(f"{base}/disburse", headers=officer, json={"amount_fen": 5_000_000}) for _ in range(3))
    )
    assert sorted(r.status_code for r in results) == [200, 409, 409]
    mine = (await client.get(f"{API}/applications/{app['id']}", headers=headers)).json()
    assert [e["action"] for e in mine["events"]].count("disburse") == 1


async def test_officer_page_is_the_single_views_loaded_in_batches(client, login):
    """A page of applications shows each as its own page does, and costs the same number of
    queries for one application as for three (no query per row)."""
    from sqlalchemy import event

    from app_api.core.db import get_engine

    _, officer = await institution(client, login, "亳州农商银行利辛支行")
    p = await product(client, officer)
    for _ in range(3):
        headers, account_id, _ = await applicant(client, login)
        r = await client.post(
            f"{API}/applications", headers={**headers, **await step_up(account_id)}, json=application(p["id"])
        )
        assert r.status_code == 201, r.text
    newest = r.json()["id"]
    assert (
        await client.post(f"{API}/officer/applications/{newest}/accept", headers=officer)
    ).status_code == 200

    selects: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        # This column's reads and the consents (background jobs may query other tables meanwhile).
        if statement.lstrip().upper().startswith("SELECT") and (
            "loans_" in statement or "app_consent" in statement
        ):
            selects.append(statement)

    engine = get_engine().sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        page = (await client.get(f"{API}/officer/applications", headers=officer)).json()
        for_three = len(selects)
        selects.clear()
        one = (await client.get(f"{API}/officer/applications", headers=officer, params={"limit": 1})).json()
        for_one = len(selects)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert page["total"] == 3 and len(page["items"]) == 3 and for_three == for_one
    assert one["items"] == page["items"][:1] and one["items"][0]["id"] == newest
    singles = [
        (await client.get(f"{API}/officer/applications/{a['id']}", headers=officer)).json()
        for a in page["items"]
    ]
    assert page["items"] == singles
    assert [e["action"] for e in singles[0]["events"]] == ["submit", "accept"]
    assert all(a["applicant"]["consent_valid"] and a["applicant"]["name"] == "周永刚" for a in singles)
