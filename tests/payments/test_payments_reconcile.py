"""Daily reconciliation: a day seeded with one discrepancy of each kind is reconciled into exactly those."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import secrets
from collections import Counter
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from payments_helpers import control
from sqlmodel import select

from app_api.core.clock import CHINA_TZ
from app_api.core.db import session_scope
from app_api.platform.audit.models import AuditEvent
from payments import registry
from payments.models import PaymentOrder
from payments.orders import create_order
from payments.sandbox.common import BillRow, fee_for


@asynccontextmanager
async def fresh_merchant(ledger, provider: str):
    """A merchant of our own at the sandbox, so other tests' orders stay out of this bill."""
    from dataclasses import replace

    sandbox = ledger.sandboxes[provider]
    old = ledger.providers[provider]
    if provider == "wechat_v2":
        from payments.providers.wechat_v2 import WeChatPayV2Provider

        m = sandbox.add_merchant()
        new = WeChatPayV2Provider(replace(old.config, appid=m.appid, mch_id=m.mch_id, api_key=m.api_key))
    elif provider == "wechat_v3":
        from payments.providers.wechat_v3 import WeChatPayV3Provider

        m = sandbox.add_merchant()
        new = WeChatPayV3Provider(
            replace(
                old.config,
                appid=m.appid,
                mchid=m.mchid,
                private_key=m.private_key_pem,
                cert_serial_no=m.cert_serial_no,
                apiv3_key=m.apiv3_key,
            )
        )
    else:
        from payments.providers.alipay import AlipayProvider

        m = sandbox.add_app()
        new = AlipayProvider(
            replace(old.config, app_id=m.app_id, app_private_key=m.private_key_pkcs1, seller_id=m.pid)
        )
    registry.configure({**ledger.providers, provider: new}, notify_base=ledger.url)
    try:
        yield new, sandbox
    finally:
        sandbox.notifier.held.clear()
        registry.configure(ledger.providers, notify_base=ledger.url)


async def place(client, headers, account: str, provider: str, *, ref: str | None = None, amount: int = 1000):
    async with session_scope() as s:
        order = await create_order(
            s,
            account_id=account,
            purpose="testcol.bill",
            purpose_ref=ref or "R" + secrets.token_hex(6),
            amount_fen=amount,
            description="电费",
            provider=provider,
            channel="miniprogram",
        )
    payer = "2088102177000009" if provider == "alipay" else "oR"
    r = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay", headers=headers, json={"payer_id": payer}
    )
    assert r.status_code == 200, r.text
    return order


async def run_and_wait(client, finance, provider: str, day: dt.date) -> dict:
    r = await client.post(
        "/api/v1/payments/finance/reconciliation/runs",
        headers=finance,
        json={"provider": provider, "bill_date": day.isoformat()},
    )
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    for _ in range(500):
        run = (
            await client.get(f"/api/v1/payments/finance/reconciliation/runs/{run_id}", headers=finance)
        ).json()
        if run["status"] != "running":
            return run
        await asyncio.sleep(0.02)
    raise AssertionError("run did not finish")


PROVIDER_DAYS = {
    "wechat_v2": dt.date(2025, 3, 10),
    "wechat_v3": dt.date(2025, 3, 11),
    "alipay": dt.date(2025, 3, 12),
}


@pytest.mark.parametrize("provider", list(PROVIDER_DAYS))
async def test_seeded_day_yields_exactly_its_discrepancies(ledger, client, login, provider):
    day = PROVIDER_DAYS[provider]
    at = dt.datetime.combine(day, dt.time(9, 30), tzinfo=CHINA_TZ)
    headers, finance = await login(), await login(roles=["finance"])
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    server = ledger.servers[provider]
    async with fresh_merchant(ledger, provider) as (prov, sandbox):

        async def pay(order, **extra):
            return await control(
                server, "/_sandbox/pay", out_trade_no=order.out_trade_no, paid_at=at.isoformat(), **extra
            )

        ok = await place(client, headers, account, provider, amount=1234)
        await pay(ok)
        amount = await place(client, headers, account, provider, amount=2000)
        await pay(amount)
        status = await place(client, headers, account, provider, amount=3000)
        await pay(status, hold=True)  # paid at the provider; the ledger never heard of it
        ref = "DUP" + secrets.token_hex(4)
        dup1 = await place(client, headers, account, provider, ref=ref, amount=500)
        dup2 = await place(client, headers, account, provider, ref=ref, amount=500)
        await pay(dup1)
        await pay(dup2)
        ghost = await place(client, headers, account, provider, amount=700)
        async with session_scope() as s:
            await s.exec(
                sa.update(PaymentOrder).where(PaymentOrder.id == amount.id).values(amount_fen=2100)
            )  # the ledger disagrees on the amount
            await s.exec(
                sa.update(PaymentOrder)
                .where(PaymentOrder.id == ghost.id)
                .values(status="paid", paid_at=at, provider_txn_id="GHOST" + secrets.token_hex(4))
            )
        merchant_id, app_id = prov.merchant_id, prov.app_id
        base = dict(traded_at=at, app_id=app_id, mch_id=merchant_id, payer="x", trade_type="JSAPI")
        sandbox.extra_bill_rows[day] = [
            BillRow(
                transaction_id="42NOSUCH" + secrets.token_hex(4),
                out_trade_no="NOSUCH" + secrets.token_hex(4),
                status="SUCCESS",
                amount_fen=990,
                fee_fen=fee_for(990),
                **base,
            ),
            BillRow(
                transaction_id="42REF",
                out_trade_no=ok.out_trade_no,
                status="REFUND",
                amount_fen=1234,
                refund_id="50X",
                out_refund_no="RNOPE" + secrets.token_hex(3),
                refund_fen=234,
                refund_status="SUCCESS",
                fee_fen=-fee_for(234),
                **base,
            ),
        ]
        if provider != "alipay":  # Alipay bills are per account: no row names another app
            sandbox.extra_bill_rows[day].append(
                BillRow(
                    traded_at=at,
                    app_id="wx_other",
                    mch_id="1999999999",
                    payer="y",
                    trade_type="APP",
                    transaction_id="42OTHER",
                    out_trade_no="OTHER1",
                    status="SUCCESS",
                    amount_fen=100,
                )
            )

        run = await run_and_wait(client, finance, provider, day)
    assert run["status"] == "done", run
    items = (
        await client.get(f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/items", headers=finance)
    ).json()
    found = Counter(i["category"] for i in items)
    expected = Counter(
        {
            "missing_in_ledger": 1,
            "missing_at_provider": 1,
            "amount_mismatch": 1,
            "status_mismatch": 1,
            "duplicate_purpose": 1,
            "refund_mismatch": 1,
        }
    )
    if provider != "alipay":
        expected["foreign_row"] = 1
    assert found == expected, items
    by_cat = {i["category"]: i for i in items}
    assert by_cat["amount_mismatch"]["out_trade_no"] == amount.out_trade_no
    assert (by_cat["amount_mismatch"]["ledger_fen"], by_cat["amount_mismatch"]["provider_fen"]) == (
        2100,
        2000,
    )
    assert by_cat["status_mismatch"]["out_trade_no"] == status.out_trade_no
    assert by_cat["missing_at_provider"]["out_trade_no"] == ghost.out_trade_no
    assert by_cat["duplicate_purpose"]["out_trade_no"] in (dup1.out_trade_no, dup2.out_trade_no)
    totals = run["totals"]
    paid_rows = [1234, 2000, 3000, 500, 500, 990]
    assert totals["provider_paid_count"] == 6 and totals["provider_paid_fen"] == sum(paid_rows)
    assert totals["provider_fee_fen"] == sum(fee_for(a) for a in paid_rows) - fee_for(234)
    assert totals["ledger_paid_count"] == 5  # ok, amount, dup1, dup2, ghost
    assert totals["foreign_rows"] == (0 if provider == "alipay" else 1)

    # Resolve one with a note (audited); a second resolution is refused.
    item = by_cat["missing_in_ledger"]
    url = f"/api/v1/payments/finance/reconciliation/items/{item['id']}/resolve"
    r = await client.post(url, headers=finance, json={"note": "已与渠道核实，为测试交易"})
    assert r.status_code == 200 and r.json()["resolution_note"] == "已与渠道核实，为测试交易"
    assert (await client.post(url, headers=finance, json={"note": "再次处理"})).status_code == 409
    async with session_scope() as s:
        audited = (await s.exec(select(AuditEvent).where(AuditEvent.subject_id == item["id"]))).all()
    assert [a.action for a in audited] == ["payments.discrepancy_resolved"]

    csv_r = await client.get(
        f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/export",
        headers=finance,
        params={"format": "csv"},
    )
    rows = list(csv.reader(io.StringIO(csv_r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "差错类型" and len(rows) == 1 + sum(expected.values())
    assert any(r[0] == "金额不符" and r[4] == "21.00" and r[5] == "20.00" for r in rows)
    xlsx = await client.get(
        f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/export",
        headers=finance,
        params={"format": "xlsx"},
    )
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book["差错明细"].max_row == 1 + sum(expected.values())
    assert (
        await client.get(f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/items", headers=headers)
    ).status_code == 403


@pytest.mark.parametrize(
    "provider,tamper,message",
    [
        ("wechat_v3", "hash", "SHA1"),
        ("wechat_v3", "truncate", "损坏"),
        ("alipay", "truncate", "压缩包"),
        ("wechat_v2", "drop_row", "汇总不符"),
    ],
)
async def test_corrupt_bill_fails_the_run_cleanly(ledger, client, login, provider, tamper, message):
    day = dt.date(2025, 4, 1) + dt.timedelta(days=secrets.randbelow(200))
    at = dt.datetime.combine(day, dt.time(12), tzinfo=CHINA_TZ)
    headers, finance = await login(), await login(roles=["finance"])
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with fresh_merchant(ledger, provider) as (_prov, sandbox):
        for _ in range(2):
            order = await place(client, headers, account, provider)
            await control(
                ledger.servers[provider],
                "/_sandbox/pay",
                out_trade_no=order.out_trade_no,
                paid_at=at.isoformat(),
            )
        sandbox.bill_tamper = tamper
        try:
            run = await run_and_wait(client, finance, provider, day)
        finally:
            sandbox.bill_tamper = None
        assert run["status"] == "failed" and message in run["error"], run
        items = (
            await client.get(
                f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/items", headers=finance
            )
        ).json()
        assert items == []
        # The same day with an intact bill reconciles cleanly.
        clean = await run_and_wait(client, finance, provider, day)
    assert clean["status"] == "done" and sum(clean["totals"]["discrepancies"].values()) == 0


async def test_day_without_bill_lists_ledger_payments_as_missing(ledger, client, login):
    finance = await login(roles=["finance"])
    day = dt.date(2024, 1, 1) + dt.timedelta(days=secrets.randbelow(300))
    headers = await login()
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with fresh_merchant(ledger, "wechat_v2"):
        order = await place(client, headers, account, "wechat_v2")
        async with session_scope() as s:
            await s.exec(
                sa.update(PaymentOrder)
                .where(PaymentOrder.id == order.id)
                .values(
                    status="paid",
                    paid_at=dt.datetime.combine(day, dt.time(8), tzinfo=CHINA_TZ),
                    provider_txn_id="Z",
                )
            )
        run = await run_and_wait(client, finance, "wechat_v2", day)
    assert run["status"] == "done" and run["totals"]["discrepancies"]["missing_at_provider"] == 1


async def test_each_merchant_reconciles_only_its_own_orders(ledger, client, login):
    """Two merchants of one provider paid on the same day: each bill matches only its own orders."""
    day = dt.date(2025, 2, 14)
    at = dt.datetime.combine(day, dt.time(10), tzinfo=CHINA_TZ)
    headers, finance = await login(), await login(roles=["finance"])
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    runs = []
    for paid in (2, 1):
        async with fresh_merchant(ledger, "wechat_v3"):
            for _ in range(paid):
                order = await place(client, headers, account, "wechat_v3")
                await control(
                    ledger.servers["wechat_v3"],
                    "/_sandbox/pay",
                    out_trade_no=order.out_trade_no,
                    paid_at=at.isoformat(),
                )
            runs.append(await run_and_wait(client, finance, "wechat_v3", day))
    for run, paid in zip(runs, (2, 1), strict=True):
        assert run["status"] == "done", run
        assert sum(run["totals"]["discrepancies"].values()) == 0, run["totals"]
        assert run["total_rows"] == paid, run


@pytest.mark.parametrize("provider", ["wechat_v2", "wechat_v3", "alipay"])
async def test_two_partial_refunds_of_one_order_reconcile_cleanly(ledger, client, login, provider):
    """A bill of 10 yuan refunded 3 and then 2: the provider's bill and the ledger agree on both."""
    from test_payments_ledger import wait_status

    from payments.models import OrderStatus

    headers, finance = await login(), await login(roles=["finance"])
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    async with fresh_merchant(ledger, provider):
        order = await place(client, headers, account, provider, amount=1000)
        await control(ledger.servers[provider], "/_sandbox/pay", out_trade_no=order.out_trade_no)
        await wait_status(order.id, OrderStatus.PAID)
        url = f"/api/v1/payments/finance/orders/{order.id}/refunds"
        for n, amount in enumerate((300, 200)):
            r = await client.post(
                url,
                headers=finance,
                json={"amount_fen": amount, "out_refund_no": f"R{n}{order.out_trade_no}"},
            )
            assert r.status_code == 202, r.text
            for _ in range(250):
                async with session_scope() as s:
                    row = (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order.id))).one()
                if row.refunded_fen == 300 + (200 if n else 0):
                    break
                await asyncio.sleep(0.02)
            assert row.refunded_fen == 300 + (200 if n else 0), row
        run = await run_and_wait(client, finance, provider, dt.datetime.now(CHINA_TZ).date())
    assert run["status"] == "done", run
    totals = run["totals"]
    assert sum(totals["discrepancies"].values()) == 0, totals
    assert (totals["provider_refund_count"], totals["provider_refund_fen"]) == (2, 500), totals
    assert (totals["ledger_refund_count"], totals["ledger_refund_fen"]) == (2, 500), totals


async def test_a_bill_listing_one_payment_or_refund_twice_is_flagged(ledger, client, login):
    """The provider's bill claims a payment twice and a refund twice: two discrepancies, not silence."""
    from test_payments_ledger import wait_status

    from payments.models import OrderStatus

    headers, finance = await login(), await login(roles=["finance"])
    account = (await client.get("/api/v1/me", headers=headers)).json()["id"]
    today = dt.datetime.now(CHINA_TZ)
    async with fresh_merchant(ledger, "wechat_v2") as (prov, sandbox):
        order = await place(client, headers, account, "wechat_v2", amount=1000)
        await control(ledger.servers["wechat_v2"], "/_sandbox/pay", out_trade_no=order.out_trade_no)
        await wait_status(order.id, OrderStatus.PAID)
        r = await client.post(
            f"/api/v1/payments/finance/orders/{order.id}/refunds",
            headers=finance,
            json={"amount_fen": 300, "out_refund_no": "RD" + order.out_trade_no},
        )
        assert r.status_code == 202, r.text
        await wait_status(order.id, OrderStatus.PARTIALLY_REFUNDED)
        paid = await load_order(order.id)
        base = dict(
            traded_at=today,
            app_id=prov.app_id,
            mch_id=prov.merchant_id,
            payer="x",
            trade_type="JSAPI",
            transaction_id=paid.provider_txn_id,
            out_trade_no=order.out_trade_no,
            amount_fen=1000,
        )
        sandbox.extra_bill_rows[today.date()] = [
            BillRow(status="SUCCESS", fee_fen=fee_for(1000), **base),
            BillRow(
                status="REFUND",
                refund_id="50DUP",
                out_refund_no="RD" + order.out_trade_no,
                refund_fen=300,
                refund_status="SUCCESS",
                fee_fen=-fee_for(300),
                **base,
            ),
        ]
        try:
            run = await run_and_wait(client, finance, "wechat_v2", today.date())
        finally:
            sandbox.extra_bill_rows.pop(today.date(), None)
    assert run["status"] == "done", run
    items = (
        await client.get(f"/api/v1/payments/finance/reconciliation/runs/{run['id']}/items", headers=finance)
    ).json()
    by_cat = {i["category"]: i for i in items}
    assert sorted(by_cat) == ["amount_mismatch", "refund_mismatch"], items
    assert (
        by_cat["amount_mismatch"]["provider_fen"] == 2000
        and "出现 2 次" in by_cat["amount_mismatch"]["detail"]
    )
    assert (
        by_cat["refund_mismatch"]["provider_fen"] == 600
        and "出现 2 次" in by_cat["refund_mismatch"]["detail"]
    )
    assert by_cat["refund_mismatch"]["out_trade_no"] == order.out_trade_no


async def load_order(order_id: str) -> PaymentOrder:
    async with session_scope() as s:
        return (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).one()
