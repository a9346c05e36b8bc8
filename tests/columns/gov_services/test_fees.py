"""Fees through the payments package (issue 16 item 1), end to end through the HTTP API against the
payment providers' sandboxes: a paid fee moves the application on once; a rejection refunds it at
the provider; an unpaid fee expires, cancels the application and frees its client key; a second
payment of one application is refunded; reconciliation and the finance listing show fee payments
with their department; a free item is unchanged; the fee rule travels through import and export."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.columns.gov_services.conftest import API, Resident, make_resident, make_staff, pdf
from tests.columns.utilities.utilities_helpers import pay_at_provider, wait_until
from tests.conftest import LoginFn

ID_CARD = "BZ-GA-003"  # 居民身份证换领: 20 元, charged at submission
ID_DEPT = "谯城区公安分局"
TRANSFER = "BZ-ZG-002"  # 不动产转移登记: 80 / 550 元 by use, charged at acceptance
LAND_DEPT = "亳州市自然资源和规划局"
PAYMENTS = "/api/v1/payments"


@pytest.fixture(scope="module")
async def pay_sandbox(live_url: str) -> AsyncIterator[dict[str, str]]:
    """Payment-provider sandboxes of this module on loopback (merchants of their own, so a day's
    bill holds only this module's payments), notifications sent to the app served on loopback."""
    from payments import registry
    from payments.sandbox.common import free_port, serve_in_thread

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    providers, sandboxes = registry.build_sandbox_providers(base)
    server = serve_in_thread(sandboxes.asgi_app(), port=port)
    saved = (registry._providers, registry._sandboxes, registry._notify_base)
    registry.configure(providers, notify_base=live_url, sandbox_set=sandboxes)
    yield {name: f"{base}/{name}" for name in ("wechat_v2", "wechat_v3", "alipay")}
    with registry._lock:
        registry._providers, registry._sandboxes, registry._notify_base = saved
    server.stop()


async def _resident(client: httpx.AsyncClient, login: LoginFn, *, real_estate: bool = False) -> Resident:
    certs: tuple[tuple[str, str], ...] = (
        ("resident_id_card", "居民身份证"),
        ("household_register", "居民户口簿"),
    )
    if real_estate:
        certs += (("real_estate_certificate", "不动产权证书"),)
    return await make_resident(client, login, certs=certs)


async def _draft(client: httpx.AsyncClient, r: Resident, code: str, key: str | None = None) -> str:
    resp = await client.post(
        f"{API}/applications",
        json={"item_code": code, "client_key": key or uuid.uuid4().hex},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    app_id = str(resp.json()["id"])
    resp = await client.post(
        f"{API}/applications/{app_id}/prefill", json={"groups": ["person", "certificate"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    return app_id


async def _submit(client: httpx.AsyncClient, r: Resident, app_id: str) -> dict[str, Any]:
    resp = await client.post(
        f"{API}/applications/{app_id}/submit", json={"delivery": "窗口领取"}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _id_card_awaiting(client: httpx.AsyncClient, r: Resident, key: str | None = None) -> str:
    app_id = await _draft(client, r, ID_CARD, key)
    out = await _submit(client, r, app_id)
    assert out["status"] == "awaiting_payment" and out["status_name"] == "待缴费"
    assert out["fee_fen"] == 2000 and out["fee_charge_at"] == "submit" and out["fee_due_at"]
    assert out["submitted_at"] is None and out["due_at"] is None and not out["fee_paid"]
    return app_id


async def _start(client: httpx.AsyncClient, r: Resident, app_id: str, provider: str) -> dict[str, Any]:
    resp = await client.post(
        f"{API}/applications/{app_id}/fee/pay", json={"provider": provider}, headers=r.headers
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def _app(client: httpx.AsyncClient, r: Resident, app_id: str) -> dict[str, Any]:
    resp = await client.get(f"{API}/applications/{app_id}", headers=r.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _at_provider(urls: dict[str, str], provider: str, out_trade_no: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=urls[provider], timeout=30) as c:
        resp = await c.get(f"/_sandbox/orders/{out_trade_no}")
        resp.raise_for_status()
        return dict(resp.json())


async def _reconcile_today(
    client: httpx.AsyncClient, finance: dict[str, str], provider: str
) -> dict[str, Any]:
    from app_api.core.clock import china_today

    resp = await client.post(
        f"{PAYMENTS}/finance/reconciliation/runs",
        headers=finance,
        json={"provider": provider, "bill_date": china_today().isoformat()},
    )
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["id"]

    async def finished() -> bool:
        run = (await client.get(f"{PAYMENTS}/finance/reconciliation/runs/{run_id}", headers=finance)).json()
        return bool(run["status"] != "running")

    await wait_until(finished, timeout=30)
    run = (await client.get(f"{PAYMENTS}/finance/reconciliation/runs/{run_id}", headers=finance)).json()
    items = (
        await client.get(f"{PAYMENTS}/finance/reconciliation/runs/{run_id}/items", headers=finance)
    ).json()
    return {"run": run, "items": items}


async def test_paid_fee_moves_the_application_on_once_and_finance_sees_it_with_its_department(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    r = await _resident(client, login)
    app_id = await _id_card_awaiting(client, r)
    reviewer, _ = await make_staff(client, login, department=ID_DEPT)
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert app_id not in {a["id"] for a in queue}  # unpaid: not the department's yet

    started = await _start(client, r, app_id, "wechat_v2")
    assert started["amount_fen"] == 2000 and started["client_params"]
    await pay_at_provider(pay_sandbox, "wechat_v2", started["out_trade_no"], started["client_params"])

    async def submitted() -> bool:
        return bool((await _app(client, r, app_id))["status"] == "submitted")

    await wait_until(submitted)
    app = await _app(client, r, app_id)
    assert app["fee_paid"] and app["submitted_at"] and app["due_at"] and app["fee_due_at"] is None
    kinds = [e["kind"] for e in app["timeline"]]
    assert kinds.count("fee_paid") == 1 and kinds.count("submitted") == 1
    assert kinds.index("awaiting_payment") < kinds.index("fee_paid") < kinds.index("submitted")
    [fee] = app["fee_payments"]
    assert fee["status"] == "paid" and fee["out_trade_no"] == started["out_trade_no"]
    queue = (await client.get(f"{API}/review/queue", headers=reviewer)).json()["applications"]
    assert app_id in {a["id"] for a in queue}
    # Paying again is refused: the application no longer awaits payment.
    again = await client.post(
        f"{API}/applications/{app_id}/fee/pay", json={"provider": "alipay"}, headers=r.headers
    )
    assert again.status_code == 409 and again.json()["code"] == "gov_services.fee_payment_closed"

    # Finance: the ledger's order is gov_services.fee for this application; the column's listing
    # names the department, and the day's reconciliation matched the payment.
    finance = await login(roles=["finance"])
    order = await client.get(f"{PAYMENTS}/finance/orders/{fee['order_id']}/events", headers=finance)
    assert order.status_code == 200, order.text
    listing = (
        await client.get(f"{API}/finance/fees", headers=finance, params={"department": ID_DEPT})
    ).json()
    mine = next(f for f in listing["fees"] if f["order_id"] == fee["order_id"])
    assert mine["department"] == ID_DEPT and mine["status"] == "paid" and mine["amount_fen"] == 2000
    assert mine["application_id"] == app_id and mine["item_code"] == ID_CARD
    [dept] = listing["departments"]
    assert dept["department"] == ID_DEPT and dept["paid_count"] >= 1 and dept["paid_fen"] >= 2000
    resident_listing = await client.get(f"{API}/finance/fees", headers=r.headers)
    assert resident_listing.status_code == 403

    result = await _reconcile_today(client, finance, "wechat_v2")
    run = result["run"]
    assert run["status"] == "done", run
    assert run["totals"]["provider_paid_count"] >= 1 and run["totals"]["provider_paid_fen"] >= 2000
    assert all(i.get("out_trade_no") != started["out_trade_no"] for i in result["items"])


async def test_rejection_after_paid_acceptance_refunds_at_the_provider_once(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    r = await _resident(client, login, real_estate=True)
    app_id = await _draft(client, r, TRANSFER)
    for material in ("存量房买卖合同", "完税凭证"):
        resp = await client.post(
            f"{API}/applications/{app_id}/uploads",
            data={"material": material},
            files={"file": ("c.pdf", pdf(), "application/pdf")},
            headers=r.headers,
        )
        assert resp.status_code == 201, resp.text
    # The fee is computed from a field: submitting without it is refused with what to fill.
    missing = await client.post(
        f"{API}/applications/{app_id}/submit", json={"delivery": "窗口领取"}, headers=r.headers
    )
    assert missing.status_code == 422 and missing.json()["code"] == "gov_services.fee_not_computed"
    assert "不动产用途" in missing.json()["detail"]
    filled = await client.put(
        f"{API}/applications/{app_id}/fields", json={"fields": {"property.use": "非住宅"}}, headers=r.headers
    )
    assert filled.status_code == 200, filled.text
    records = await client.put(
        f"{API}/applications/{app_id}/fields", json={"fields": {"person.name": "别人"}}, headers=r.headers
    )
    assert records.status_code == 422
    out = await _submit(client, r, app_id)
    assert out["status"] == "submitted" and out["fee_fen"] == 55000 and out["fee_charge_at"] == "accept"

    reviewer, _ = await make_staff(client, login, department=LAND_DEPT)
    accepted = await client.post(f"{API}/review/applications/{app_id}/accept", headers=reviewer)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "awaiting_payment" and accepted.json()["due_at"] is None
    assert accepted.json()["paused"] is True  # the clock waits for the resident's payment
    started = await _start(client, r, app_id, "alipay")
    assert started["amount_fen"] == 55000
    await pay_at_provider(pay_sandbox, "alipay", started["out_trade_no"], started["client_params"])

    async def accepted_again() -> bool:
        return bool((await _app(client, r, app_id))["status"] == "accepted")

    await wait_until(accepted_again)
    assert (await _app(client, r, app_id))["due_at"]

    rejected = await client.post(
        f"{API}/review/applications/{app_id}/reject",
        json={"reason": "房屋存在查封登记，不予办理"},
        headers=reviewer,
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

    async def refunded_at_provider() -> bool:
        order = await _at_provider(pay_sandbox, "alipay", started["out_trade_no"])
        return bool(order["refunds"])

    await wait_until(refunded_at_provider, timeout=20)
    order = await _at_provider(pay_sandbox, "alipay", started["out_trade_no"])
    assert len(order["refunds"]) == 1
    app = await _app(client, r, app_id)
    [fee] = app["fee_payments"]
    assert fee["status"] == "refunded" and fee["refund_reason"] == "申请不予办理，已缴费用原路退回"
    assert [e["kind"] for e in app["timeline"]].count("fee_refunded") == 1
    # A second rejection is refused; the refund stays one.
    again = await client.post(
        f"{API}/review/applications/{app_id}/reject", json={"reason": "重复操作"}, headers=reviewer
    )
    assert again.status_code == 409
    from sqlmodel import select

    from app_api.core.db import session_scope
    from payments.models import PaymentRefund

    async with session_scope() as s:
        refunds = (await s.exec(select(PaymentRefund).where(PaymentRefund.order_id == fee["order_id"]))).all()
    assert len(refunds) == 1 and refunds[0].amount_fen == 55000


async def test_unpaid_fee_expires_cancels_the_application_and_frees_its_client_key(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    from sqlmodel import col

    from app_api.core.db import session_scope, utcnow
    from columns.gov_services import tasks
    from columns.gov_services.models import Application

    r = await _resident(client, login)
    key = uuid.uuid4().hex
    app_id = await _id_card_awaiting(client, r, key)
    started = await _start(client, r, app_id, "wechat_v3")
    same = await client.post(
        f"{API}/applications", json={"item_code": ID_CARD, "client_key": key}, headers=r.headers
    )
    assert same.status_code == 200 and same.json()["id"] == app_id  # the key still names it

    # The time limit passes (the sweep is what the gov_services.expire_fees schedule runs).
    async with session_scope() as s:
        await s.exec(
            sa.update(Application)
            .where(col(Application.id) == app_id)
            .values(fee_due_at=utcnow() - dt.timedelta(seconds=1))
        )
    admin = await login(roles=["admin"])
    schedules = (await client.get("/api/v1/admin/jobs/schedules", headers=admin)).json()
    [expiry] = [x for x in schedules if x["task_name"] == "gov_services.expire_fees"]
    assert expiry["declared"] and expiry["cron"] == "* * * * *"  # kept in the database's schedules
    assert await tasks.expire_fees() >= 1
    assert await tasks.expire_fees() == 0  # nothing left; idempotent
    app = await _app(client, r, app_id)
    assert app["status"] == "cancelled" and app["timeline"][-1]["kind"] == "cancelled"
    closed = await client.post(
        f"{API}/applications/{app_id}/fee/pay", json={"provider": "alipay"}, headers=r.headers
    )
    assert closed.status_code == 409 and closed.json()["code"] == "gov_services.fee_payment_closed"

    fresh = await client.post(
        f"{API}/applications", json={"item_code": ID_CARD, "client_key": key}, headers=r.headers
    )
    assert fresh.status_code == 201 and fresh.json()["id"] != app_id

    # The order the resident had opened is paid after all (late wallet): the money goes back.
    await pay_at_provider(pay_sandbox, "wechat_v3", started["out_trade_no"], started["client_params"])

    async def refunded() -> bool:
        fees = (await _app(client, r, app_id))["fee_payments"]
        return bool(fees[0]["status"] == "refunded")

    await wait_until(refunded)
    app = await _app(client, r, app_id)
    assert (
        app["status"] == "cancelled" and app["fee_payments"][0]["refund_reason"] == "申请已结束，费用原路退回"
    )


async def test_a_second_payment_of_one_application_is_refunded_and_listed_by_reconciliation(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    r = await _resident(client, login)
    app_id = await _id_card_awaiting(client, r)
    # Two phones open an order each before either pays.
    first = await _start(client, r, app_id, "wechat_v3")
    second = await _start(client, r, app_id, "wechat_v2")
    await pay_at_provider(pay_sandbox, "wechat_v3", first["out_trade_no"], first["client_params"])

    async def submitted() -> bool:
        return bool((await _app(client, r, app_id))["status"] == "submitted")

    await wait_until(submitted)
    await pay_at_provider(pay_sandbox, "wechat_v2", second["out_trade_no"], second["client_params"])

    async def second_refunded_at_provider() -> bool:
        return bool((await _at_provider(pay_sandbox, "wechat_v2", second["out_trade_no"]))["refunds"])

    await wait_until(second_refunded_at_provider, timeout=20)
    app = await _app(client, r, app_id)
    by_order = {f["out_trade_no"]: f for f in app["fee_payments"]}
    assert by_order[first["out_trade_no"]]["status"] == "paid"
    assert by_order[second["out_trade_no"]]["status"] == "refunded"
    assert by_order[second["out_trade_no"]]["refund_reason"] == "同一申请已缴费，重复缴纳的费用原路退回"
    kinds = [e["kind"] for e in app["timeline"]]
    assert kinds.count("submitted") == 1 and kinds.count("fee_paid") == 1 and kinds.count("fee_refunded") == 1
    assert not (await _at_provider(pay_sandbox, "wechat_v3", first["out_trade_no"]))["refunds"]

    finance = await login(roles=["finance"])
    result = await _reconcile_today(client, finance, "wechat_v2")
    assert result["run"]["status"] == "done", result["run"]
    [dup] = [
        i
        for i in result["items"]
        if i["out_trade_no"] == second["out_trade_no"] and i["category"] == "duplicate_purpose"
    ]
    assert "gov_services.fee" in dup["detail"] and first["out_trade_no"] in dup["detail"]


async def test_withdrawing_a_paid_application_refunds_it(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    r = await _resident(client, login)
    app_id = await _id_card_awaiting(client, r)
    started = await _start(client, r, app_id, "alipay")
    await pay_at_provider(pay_sandbox, "alipay", started["out_trade_no"], started["client_params"])

    async def submitted() -> bool:
        return bool((await _app(client, r, app_id))["status"] == "submitted")

    await wait_until(submitted)
    resp = await client.post(
        f"{API}/applications/{app_id}/withdraw", json={"reason": "不需要了"}, headers=r.headers
    )
    assert resp.status_code == 200 and resp.json()["status"] == "withdrawn"
    again = await client.post(f"{API}/applications/{app_id}/withdraw", json={}, headers=r.headers)
    assert again.status_code == 200 and again.json()["status"] == "withdrawn"

    async def refunded_at_provider() -> bool:
        return bool((await _at_provider(pay_sandbox, "alipay", started["out_trade_no"]))["refunds"])

    await wait_until(refunded_at_provider, timeout=20)
    assert len((await _at_provider(pay_sandbox, "alipay", started["out_trade_no"]))["refunds"]) == 1
    fees = (await _app(client, r, app_id))["fee_payments"]
    assert fees[0]["refund_reason"] == "申请已撤回，已缴费用原路退回"


async def test_a_free_item_is_submitted_as_before(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, photo=True)
    app_id = await _draft(client, r, "BZ-GA-002")  # 居住证: free (the guide's fee text aside)
    guide = (await client.get(f"{API}/items/BZ-GA-002")).json()
    assert guide["fee"] is None and guide["fee_fen"] == 0
    out = await _submit(client, r, app_id)
    assert out["status"] == "submitted" and out["submitted_at"] and out["due_at"]
    assert out["fee_fen"] == 0 and out["fee_charge_at"] is None and out["fee_payments"] == []
    assert "awaiting_payment" not in [e["kind"] for e in out["timeline"]]
    closed = await client.post(
        f"{API}/applications/{app_id}/fee/pay", json={"provider": "alipay"}, headers=r.headers
    )
    assert closed.status_code == 409 and closed.json()["code"] == "gov_services.fee_payment_closed"


async def test_fee_rules_compute_and_travel_through_export_and_import(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from columns.gov_services.fees import FeeNotComputable, amount_fen, parse_fee

    per_unit = parse_fee(
        {
            "kind": "per_unit",
            "field": "property.extra_certs",
            "label": "加发证书本数",
            "unit_fen": 1000,
            "base_fen": 8000,
            "max_units": 5,
        }
    )
    assert amount_fen(per_unit, {"property.extra_certs": "3"}) == 11000
    for bad in (
        {},
        {"property.extra_certs": "三"},
        {"property.extra_certs": "9"},
        {"property.extra_certs": "1.5"},
    ):
        with pytest.raises(FeeNotComputable):
            amount_fen(per_unit, bad)
    table = parse_fee(
        {"kind": "table", "field": "property.use", "label": "不动产用途", "amounts": {"住宅": 8000}}
    )
    assert amount_fen(table, {"property.use": "住宅"}) == 8000
    with pytest.raises(FeeNotComputable, match="不在收费标准中"):
        amount_fen(table, {"property.use": "车位"})

    # An instant approval has no acceptance: its fee must be charged at submission.
    from pydantic import ValidationError

    from columns.gov_services.catalogue import CatalogueItem, seed_catalogue

    instant = seed_catalogue().item("BZ-GA-001")
    assert instant is not None and instant.instant_approval
    data = instant.model_dump(mode="json") | {
        "fee_fen": 2000,
        "fee_basis": "收费依据",
        "fee": {"kind": "fixed", "amount_fen": 2000, "charge_at": "accept"},
    }
    with pytest.raises(ValidationError, match="秒批事项的费用须在提交时收取"):
        CatalogueItem.model_validate(data)
    assert CatalogueItem.model_validate(data | {"fee": {"kind": "fixed", "amount_fen": 2000}}).fee is not None

    admin = await login(roles=["admin"])
    resp = await client.get(f"{API}/admin/catalogue/export", params={"format": "csv"}, headers=admin)
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    header = rows[0]
    col, code = header.index("收费规则"), header.index("事项编码")
    row_of = {row[code]: n for n, row in enumerate(rows)}
    assert json.loads(rows[row_of[ID_CARD]][col]) == {
        "charge_at": "submit",
        "kind": "fixed",
        "amount_fen": 2000,
    }
    assert json.loads(rows[row_of[TRANSFER]][col])["amounts"] == {"住宅": 8000, "非住宅": 55000}
    assert rows[row_of["BZ-MZ-001"]][col] == ""

    broken = [list(row) for row in rows]
    n_kind, n_json, n_amount = row_of[ID_CARD], row_of[TRANSFER], row_of["BZ-JJ-001"]
    broken[n_kind][col] = '{"kind": "percent", "rate": 3}'
    broken[n_json][col] = '{"kind": "fixed", "amount_fen": 8000'
    broken[n_amount][col] = '{"kind": "fixed", "amount_fen": 1500}'  # the guide says 10 元
    out = io.StringIO()
    csv.writer(out).writerows(broken)
    resp = await client.post(
        f"{API}/admin/catalogue/import",
        files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")},
        headers=admin,
    )
    assert resp.status_code == 422, resp.text
    errors = {e["row"]: e for e in resp.json()["errors"]}
    assert errors[n_kind + 1]["column"] == "收费规则" and "percent" in errors[n_kind + 1]["message"]
    assert errors[n_json + 1]["column"] == "收费规则"
    assert errors[n_json + 1]["message"].startswith("收费规则不是有效的 JSON")
    assert errors[n_amount + 1]["column"] == "收费规则"
    assert errors[n_amount + 1]["message"] == "收费规则：固定金额与收费标准（元）不一致"
    # Nothing was imported: the fee of the first bad row is unchanged.
    guide = (await client.get(f"{API}/items/{ID_CARD}")).json()
    assert guide["fee"] == {"charge_at": "submit", "kind": "fixed", "amount_fen": 2000}


async def test_an_instant_approval_item_with_a_fee_is_approved_when_paid_and_refunded_when_revoked(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, pay_sandbox: dict[str, str]
) -> None:
    """A new item imported from a sheet: 无犯罪记录证明's guide (instant approval) with a 20 元 fee.
    A reviewer revoking the instant approval refunds the fee at the provider, once."""
    admin = await login(roles=["admin"])
    resp = await client.get(f"{API}/admin/catalogue/export", params={"format": "csv"}, headers=admin)
    rows = list(csv.reader(io.StringIO(resp.content.decode("utf-8-sig"))))
    header = rows[0]
    row = next(list(r) for r in rows if r[header.index("事项编码")] == "BZ-GA-001")
    code = f"BZ-FEE-{uuid.uuid4().hex[:8].upper()}"
    row[header.index("事项编码")] = code
    row[header.index("收费标准（元）")] = "20"
    row[header.index("收费依据")] = "测试用收费依据"
    row[header.index("收费规则")] = '{"kind": "fixed", "amount_fen": 2000}'
    out = io.StringIO()
    csv.writer(out).writerows([header, row])
    resp = await client.post(
        f"{API}/admin/catalogue/import",
        files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text

    r = await _resident(client, login)
    app_id = await _draft(client, r, code)
    resp = await client.post(f"{API}/applications/{app_id}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "awaiting_payment" and not resp.json()["instant"]
    started = await _start(client, r, app_id, "wechat_v3")
    await pay_at_provider(pay_sandbox, "wechat_v3", started["out_trade_no"], started["client_params"])

    async def approved() -> bool:
        return bool((await _app(client, r, app_id))["status"] == "approved")

    await wait_until(approved)
    app = await _app(client, r, app_id)
    assert app["instant"] and app["fee_paid"] and app["result_cert_no"]
    kinds = [e["kind"] for e in app["timeline"]]
    assert kinds.index("fee_paid") < kinds.index("submitted") < kinds.index("approved")

    reviewer, _ = await make_staff(client, login, department="谯城区公安分局")
    revoked = await client.post(
        f"{API}/review/applications/{app_id}/revoke", json={"reason": "抽查发现材料不实"}, headers=reviewer
    )
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text

    async def refunded_at_provider() -> bool:
        order = await _at_provider(pay_sandbox, "wechat_v3", started["out_trade_no"])
        return bool(order["refunds"])

    await wait_until(refunded_at_provider, timeout=20)
    order = await _at_provider(pay_sandbox, "wechat_v3", started["out_trade_no"])
    assert len(order["refunds"]) == 1
    app = await _app(client, r, app_id)
    [fee] = app["fee_payments"]
    assert fee["status"] == "refunded" and fee["refund_reason"] == "秒批结果已撤销，已缴费用原路退回"
    assert [e["kind"] for e in app["timeline"]].count("fee_refunded") == 1
