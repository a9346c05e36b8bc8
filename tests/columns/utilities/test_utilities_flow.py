"""Bind, list, pay through each provider, receipt; the biller hears of each paid bill exactly once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlmodel import select
from utilities_helpers import bill, new_account_no, pay_at_provider, wait_until

from app_api.core.db import session_scope, utcnow
from columns.utilities import delivery, reminders
from columns.utilities.models import BillerNotice, NoticeStatus

API = "/api/v1/columns/utilities"


async def bind(client: Any, headers: dict[str, str], biller: str, account_no: str, holder: str) -> Any:
    return await client.post(
        f"{API}/bindings",
        headers=headers,
        json={"biller_code": biller, "account_no": account_no, "holder_name": holder},
    )


async def household(
    client: Any, login: Any, billers: Any, *, biller: str = "water", amounts: tuple[int, ...] = (3650, 4120)
) -> tuple[dict[str, str], str]:
    headers = await login()
    acct = new_account_no()
    billers[biller].add_account(
        acct,
        "王淑芬",
        "谯城区汤陵街道",
        [bill(acct, f"2026-{10 + i}", a, 3 + 10 * i) for i, a in enumerate(amounts)],
    )
    r = await bind(client, headers, biller, acct, "王淑芬")
    assert r.status_code == 201, r.text
    return headers, acct


async def notice_for(bill_no: str) -> BillerNotice | None:
    async with session_scope() as s:
        return (await s.exec(select(BillerNotice).where(BillerNotice.bill_no == bill_no))).first()


async def pay(
    client: Any, headers: dict[str, str], bill_ids: list[str], provider: str, sandbox: str
) -> dict[str, Any]:
    r = await client.post(
        f"{API}/payments", headers=headers, json={"bill_ids": bill_ids, "provider": provider}
    )
    assert r.status_code == 201, r.text
    started = r.json()
    await pay_at_provider(sandbox, provider, started["out_trade_no"], started["client_params"])
    return started


@pytest.mark.parametrize("provider", ["wechat_v2", "wechat_v3", "alipay"])
async def test_bind_list_pay_receipt(client, login, billers, pay_sandbox, provider):
    headers, _acct = await household(client, login, billers)

    listed = (await client.get(f"{API}/bills", headers=headers)).json()
    [account] = listed["accounts"]
    assert account["binding"]["holder_masked"] == "王**" and account["binding"]["kind_name"] == "水费"
    assert [b["amount_fen"] for b in account["bills"]] == [3650, 4120]
    assert listed["total_fen"] == 7770 and account["unavailable"] is None
    ids = [b["id"] for b in account["bills"]]

    started = await pay(client, headers, ids, provider, pay_sandbox)
    assert started["amount_fen"] == 7770

    async def confirmed() -> bool:
        r = await client.get(f"{API}/payments/{started['payment_id']}", headers=headers)
        return all(line["biller_status"] == "confirmed" for line in r.json()["lines"])

    await wait_until(confirmed)
    receipt = (await client.get(f"{API}/payments/{started['payment_id']}", headers=headers)).json()
    assert (
        receipt["status"] == "paid" and receipt["amount_yuan"] == "77.70" and receipt["provider"] == provider
    )
    assert {line["period"] for line in receipt["lines"]} == {"2026-10", "2026-11"}
    assert all(line["receipt_no"].startswith("WATER") for line in receipt["lines"])

    # The biller has the money once per bill, and nothing is outstanding any more.
    for b in account["bills"]:
        [posted] = billers["water"].payments_for(b["bill_no"])
        assert posted.amount_fen == b["amount_fen"] and posted.times_posted == 1
    after = (await client.get(f"{API}/bills", headers=headers)).json()
    assert after["accounts"][0]["bills"] == [] and after["total_fen"] == 0

    history = (await client.get(f"{API}/payments", headers=headers)).json()
    assert history["total"] == 1 and history["items"][0]["id"] == started["payment_id"]

    # Paying a paid bill again: refused, nothing created.
    again = await client.post(
        f"{API}/payments", headers=headers, json={"bill_ids": ids[:1], "provider": provider}
    )
    assert again.status_code == 409 and again.json()["code"] == "utilities.bill_already_paid"


async def test_bind_refusals(client, login, billers):
    headers = await login()
    acct = new_account_no()
    billers["power"].add_account(acct, "刘德华", "蒙城县", [bill(acct, "2026-10", 18800, 5, "186 度")])

    unknown = await bind(client, headers, "power", new_account_no(), "刘德华")
    assert unknown.status_code == 404 and unknown.json()["code"] == "utilities.account_not_found"
    wrong = await bind(client, headers, "power", acct, "刘德")
    assert wrong.status_code == 422 and wrong.json()["code"] == "utilities.holder_name_mismatch"
    malformed = await bind(client, headers, "power", "12 34", "刘德华")
    assert malformed.status_code == 422 and malformed.json()["code"] == "utilities.account_number_invalid"
    nobiller = await bind(client, headers, "telecom", acct, "刘德华")
    assert nobiller.status_code == 404 and nobiller.json()["code"] == "utilities.unknown_biller"
    assert (await client.get(f"{API}/bindings", headers=headers)).json() == []

    ok = await bind(client, headers, "power", acct, " 刘德华 ")
    assert ok.status_code == 201 and ok.json()["kind_name"] == "电费"
    dup = await bind(client, headers, "power", acct, "刘德华")
    assert dup.status_code == 409 and dup.json()["code"] == "utilities.already_bound"

    # Another resident sees nothing of it and cannot pay or unbind it.
    other = await login()
    bills = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    assert (await client.get(f"{API}/bills", headers=other)).json()["accounts"] == []
    stolen = await client.post(
        f"{API}/payments", headers=other, json={"bill_ids": [bills[0]["id"]], "provider": "wechat_v2"}
    )
    assert stolen.status_code == 404 and stolen.json()["code"] == "utilities.bill_not_found"
    gone = await client.delete(f"{API}/bindings/{ok.json()['id']}", headers=other)
    assert gone.status_code == 404
    assert (await client.delete(f"{API}/bindings/{ok.json()['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"{API}/bindings", headers=headers)).json() == []


async def test_guessing_holder_names_is_limited(client, login, billers):
    headers = await login()
    acct = new_account_no()
    billers["gas"].add_account(acct, "陈志强", "利辛县")
    for guess in range(10):
        r = await bind(client, headers, "gas", acct, f"陈{guess}")
        assert r.json()["code"] == "utilities.holder_name_mismatch"
    blocked = await bind(client, headers, "gas", acct, "陈志强")
    assert blocked.status_code == 429 and blocked.json()["code"] == "utilities.bind_attempts_exceeded"


async def test_biller_failing_three_times_is_told_exactly_once(client, login, billers, pay_sandbox):
    headers, _acct = await household(client, login, billers, amounts=(5210,))
    [b] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    billers["water"].fail_next(3, "error", "/v1/payments")

    await pay(client, headers, [b["id"]], "wechat_v2", pay_sandbox)

    async def tried_once() -> bool:
        n = await notice_for(b["bill_no"])
        return n is not None and n.attempts == 1

    await wait_until(tried_once)
    n = await notice_for(b["bill_no"])
    assert n is not None and n.status == NoticeStatus.PENDING and "unavailable" in (n.last_error or "")
    assert billers["water"].payments_for(b["bill_no"]) == []
    # Not due yet: the sweep leaves it alone.
    assert (await delivery.retry_due(now=utcnow())).get("delivered") is None

    later = utcnow()
    outcomes = []
    for _ in range(5):
        later += dt.timedelta(hours=2)
        outcomes.append(await delivery.deliver_notice(n.id, now=later))
    assert outcomes == ["retry", "retry", "delivered", "done", "done"]
    n = await notice_for(b["bill_no"])
    assert n is not None and n.status == NoticeStatus.DELIVERED and n.attempts == 4
    [posted] = billers["water"].payments_for(b["bill_no"])
    assert posted.times_posted == 1 and posted.receipt_no == n.receipt_no
    assert await delivery.retry_due(now=later + dt.timedelta(days=1)) == {}


async def test_biller_timing_out_after_recording_is_told_once(client, login, billers, pay_sandbox):
    headers, _acct = await household(client, login, billers, amounts=(2990,))
    [b] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    billers["water"].fail_next(1, "timeout", "/v1/payments")

    await pay(client, headers, [b["id"]], "alipay", pay_sandbox)

    async def tried_once() -> bool:
        n = await notice_for(b["bill_no"])
        return n is not None and n.attempts == 1

    await wait_until(tried_once)
    n = await notice_for(b["bill_no"])
    assert n is not None and n.status == NoticeStatus.PENDING
    # The biller recorded it although we never heard back.
    assert len(billers["water"].payments_for(b["bill_no"])) == 1
    assert await delivery.deliver_notice(n.id, now=utcnow() + dt.timedelta(hours=1)) == "delivered"
    [posted] = billers["water"].payments_for(b["bill_no"])
    assert posted.times_posted == 2  # the repeat was recognised, not booked twice
    n = await notice_for(b["bill_no"])
    assert n is not None and n.receipt_no == posted.receipt_no


async def test_dead_letters_visible_to_admins_and_requeued(client, login, billers, pay_sandbox):
    headers, _acct = await household(client, login, billers, amounts=(1880,))
    [b] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    billers["water"].fail_next(12, "garbage", "/v1/payments")
    await pay(client, headers, [b["id"]], "wechat_v3", pay_sandbox)

    async def tried() -> bool:
        n = await notice_for(b["bill_no"])
        return n is not None and n.attempts >= 1

    await wait_until(tried)
    n = await notice_for(b["bill_no"])
    assert n is not None
    later = utcnow() + dt.timedelta(hours=2)
    while (outcome := await delivery.deliver_notice(n.id, now=later)) != "dead":
        assert outcome == "retry"
        later += dt.timedelta(hours=2)
    n = await notice_for(b["bill_no"])
    assert n is not None and n.attempts == 12 and n.status == NoticeStatus.DEAD

    admin = await login(roles=["admin"])
    dead = (await client.get(f"{API}/admin/notices", params={"status": "dead"}, headers=admin)).json()
    assert n.id in [x["id"] for x in dead["items"]]
    denied = await client.get(f"{API}/admin/notices", headers=headers)
    assert denied.status_code == 403
    receipt = (await client.get(f"{API}/payments", headers=headers)).json()["items"][0]
    assert receipt["lines"][0]["biller_status"] == "delayed"

    r = await client.post(f"{API}/admin/notices/{n.id}/requeue", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "pending"

    async def delivered() -> bool:
        x = await notice_for(b["bill_no"])
        return x is not None and x.status == NoticeStatus.DELIVERED

    await wait_until(delivered)
    assert len(billers["water"].payments_for(b["bill_no"])) == 1
    again = await client.post(f"{API}/admin/notices/{n.id}/requeue", headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "utilities.notice_not_dead"


async def test_biller_down_or_garbled(client, login, billers, pay_sandbox):
    headers, _acct = await household(client, login, billers, biller="gas", amounts=(6600,))
    first = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]
    billers["gas"].fail_next(1, "garbage", "/v1/bills/query")
    stale = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]
    assert stale["unavailable"] == "缴费单位系统暂时无法响应，请稍后再试"
    assert [b["id"] for b in stale["bills"]] == [b["id"] for b in first["bills"]]

    billers["gas"].fail_next(1, "timeout", "/v1/bills/query")
    r = await client.post(
        f"{API}/payments", headers=headers, json={"bill_ids": [first["bills"][0]["id"]], "provider": "alipay"}
    )
    assert r.status_code == 502 and r.json()["code"] == "utilities.biller_unavailable"
    assert (await client.get(f"{API}/payments", headers=headers)).json()["total"] == 0

    billers["gas"].fail_next(1, "error", "/v1/accounts/verify")
    other = new_account_no()
    billers["gas"].add_account(other, "王淑芬", "")
    down = await bind(client, headers, "gas", other, "王淑芬")
    assert down.status_code == 502 and len((await client.get(f"{API}/bindings", headers=headers)).json()) == 1


async def test_bill_settled_elsewhere_is_not_collected(client, login, billers, pay_sandbox):
    headers, acct = await household(client, login, billers, amounts=(4400, 2200))
    bills = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    # Paid at the counter meanwhile.
    billers["water"].accounts[acct].bills[0].paid_ref = "counter-cash"
    r = await client.post(
        f"{API}/payments",
        headers=headers,
        json={"bill_ids": [b["id"] for b in bills], "provider": "wechat_v2"},
    )
    assert r.status_code == 409 and r.json()["code"] == "utilities.bill_changed"
    listed = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    assert [b["amount_fen"] for b in listed] == [2200]


async def test_bill_paid_by_two_orders_is_refunded_once(client, login, billers, pay_sandbox):
    headers, _acct = await household(client, login, billers, amounts=(3100,))
    [b] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    # Two phones of one household open an order each before either is paid.
    r1 = await client.post(
        f"{API}/payments", headers=headers, json={"bill_ids": [b["id"]], "provider": "wechat_v2"}
    )
    r2 = await client.post(
        f"{API}/payments", headers=headers, json={"bill_ids": [b["id"]], "provider": "wechat_v3"}
    )
    assert r1.status_code == r2.status_code == 201
    await pay_at_provider(pay_sandbox, "wechat_v2", r1.json()["out_trade_no"], r1.json()["client_params"])
    await pay_at_provider(pay_sandbox, "wechat_v3", r2.json()["out_trade_no"], r2.json()["client_params"])

    async def both_settled() -> bool:
        a = (await client.get(f"{API}/payments/{r1.json()['payment_id']}", headers=headers)).json()
        c = (await client.get(f"{API}/payments/{r2.json()['payment_id']}", headers=headers)).json()
        return {a["lines"][0]["biller_status"], c["lines"][0]["biller_status"]} == {"confirmed", "refunded"}

    await wait_until(both_settled)
    assert len(billers["water"].payments_for(b["bill_no"])) == 1
    from payments.models import PaymentRefund

    async with session_scope() as s:
        refunds = (
            await s.exec(
                select(PaymentRefund).where(
                    PaymentRefund.amount_fen == 3100, PaymentRefund.reason == "账单已由其他订单缴清"
                )
            )
        ).all()
    assert len(refunds) >= 1


async def test_due_date_reminder_sms_once(client, login, billers, phone):
    headers = await login(phone)
    # A reminder is not urgent: inside the default quiet hours (22:00-07:00 China time) it waits for
    # their end. This resident takes reminders at any hour, so the test holds at any time of day.
    r = await client.patch(
        "/api/v1/me/notification-settings", json={"quiet_hours_enabled": False}, headers=headers
    )
    assert r.status_code == 200, r.text
    acct = new_account_no()
    billers["power"].add_account(
        acct,
        "赵丽",
        "",
        [bill(acct, "2026-11", 12345, 2, "150 度"), bill(acct, "2026-12", 9999, 25, "120 度")],
    )
    assert (await bind(client, headers, "power", acct, "赵丽")).status_code == 201

    assert await reminders.send_due_reminders() >= 1

    async def texts() -> list[str]:
        r = await client.get("/api/v1/dev/sms", params={"phone": phone})
        return [m["text"] for m in r.json()["messages"] if "到期" in m["text"]]

    async def one_text() -> bool:
        return len(await texts()) == 1

    await wait_until(one_text)
    [text] = await texts()
    assert "123.45元" in text and acct in text and "电费" in text
    await reminders.send_due_reminders()
    await __import__("asyncio").sleep(0.3)
    assert len(await texts()) == 1


async def test_two_workers_on_one_notice_tell_the_biller_once(client, login, billers, pay_sandbox):
    import asyncio

    headers, _ = await household(client, login, billers, amounts=(7000,))
    [b] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"][0]["bills"]
    billers["water"].fail_next(1, "error", "/v1/payments")
    await pay(client, headers, [b["id"]], "alipay", pay_sandbox)

    async def tried() -> bool:
        n = await notice_for(b["bill_no"])
        return n is not None and n.attempts == 1

    await wait_until(tried)
    n = await notice_for(b["bill_no"])
    assert n is not None
    later = utcnow() + dt.timedelta(hours=1)
    outcomes = await asyncio.gather(*(delivery.deliver_notice(n.id, now=later) for _ in range(4)))
    assert sorted(outcomes).count("delivered") == 1 and set(outcomes) <= {"delivered", "leased", "done"}
    [posted] = billers["water"].payments_for(b["bill_no"])
    assert posted.times_posted == 1


async def test_racing_binds_bind_once_and_rebinding_after_unbind_works(client, login, billers):
    import asyncio

    headers = await login()
    acct = new_account_no()
    billers["water"].add_account(acct, "郭建军", "", [bill(acct, "2026-11", 1500, 9)])
    results = await asyncio.gather(*(bind(client, headers, "water", acct, "郭建军") for _ in range(3)))
    assert sorted(r.status_code for r in results) == [201, 409, 409]
    assert all(r.json()["code"] == "utilities.already_bound" for r in results if r.status_code == 409)
    [binding] = (await client.get(f"{API}/bindings", headers=headers)).json()
    assert (await client.delete(f"{API}/bindings/{binding['id']}", headers=headers)).status_code == 204
    again = await bind(client, headers, "water", acct, "郭建军")
    assert again.status_code == 201 and again.json()["id"] != binding["id"]
