"""The sweeps of hand-offs (issue 21): a paid order whose job was lost still reaches its column,
once; a refund whose submission failed or was lost is submitted when the provider is back, once.

A lost job is made the way a Redis wipe (or a job that gave up) leaves things: the ledger's change
is committed, and the job that should have followed it is gone (its outbox row deleted in the same
transaction, so no relay can send it). The sweeps then run as the scheduler runs them (the task
functions), sequentially and several at the same moment (separate connections on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from dataclasses import replace
from typing import Any

import httpx
import pytest
from payments_helpers import control
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs.models import OutboxMessage
from app_api.platform import notify
from app_api.platform.notify import Notification
from payments import refunds, registry, sweeps, tasks
from payments.errors import RefundExceedsPaid
from payments.hooks import PaidPurpose, register_paid_handler
from payments.models import (
    OrderStatus,
    PaymentEvent,
    PaymentNotification,
    PaymentOrder,
    PaymentRefund,
    RefundStatus,
)
from payments.orders import create_order
from payments.providers.alipay import AlipayProvider
from payments.providers.base import ProviderError, RefundRequest
from payments.providers.wechat_v2 import WeChatPayV2Provider
from payments.providers.wechat_v3 import WeChatPayV3Provider
from payments.registry import notify_url

PROVIDERS = ["wechat_v2", "wechat_v3", "alipay"]

# -- the test columns -------------------------------------------------------------------------------

notify.register_template("sweeptest.paid", "您的测试账单（$ref）已缴清。")
CALLS: list[str] = []  # order ids, each time a handler below ran (committed or not)
BROKEN: set[str] = set()  # purpose refs whose handler fails


async def slow_paid(session: AsyncSession, paid: PaidPurpose) -> None:
    """A column's handler: one notice to the resident, written in the hand-off's transaction. It
    holds the claim a while, so concurrent sweeps truly meet on the same order."""
    CALLS.append(paid.order_id)
    if paid.purpose_ref in BROKEN:
        raise RuntimeError("the column's handler failed")
    await notify.send(
        session, account_id=paid.account_id, template="sweeptest.paid", params={"ref": paid.purpose_ref}
    )
    await asyncio.sleep(0.2)


register_paid_handler("sweeptest.slow", slow_paid)


# -- helpers ----------------------------------------------------------------------------------------


async def account_id(client: Any, headers: dict[str, str]) -> str:
    return str((await client.get("/api/v1/me", headers=headers)).json()["id"])


async def new_order(acc: str, provider: str, *, purpose: str, amount: int = 1000) -> PaymentOrder:
    async with session_scope() as s:
        return await create_order(
            s,
            account_id=acc,
            purpose=purpose,
            purpose_ref="S" + secrets.token_hex(6),
            amount_fen=amount,
            description="物业费",
            provider=provider,
            channel="miniprogram",
        )


async def pay_at_provider(
    ledger: Any, client: Any, headers: dict[str, str], order: PaymentOrder, **delivery: Any
) -> None:
    payer = "2088102177000001" if order.provider == "alipay" else "oSweep" + secrets.token_hex(4)
    r = await client.post(
        f"/api/v1/payments/orders/{order.id}/pay", headers=headers, json={"payer_id": payer}
    )
    assert r.status_code == 200, r.text
    params = r.json()["client_params"]
    server = ledger.servers[order.provider]
    if order.provider == "alipay" and "orderStr" in params:
        await control(server, "/_sandbox/pay", order_string=params["orderStr"], **delivery)
    else:
        await control(server, "/_sandbox/pay", out_trade_no=order.out_trade_no, **delivery)


async def load(order_id: str) -> PaymentOrder:
    async with session_scope() as s:
        return (await s.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).one()


async def load_refund(refund_id: str) -> PaymentRefund:
    async with session_scope() as s:
        return (await s.exec(select(PaymentRefund).where(PaymentRefund.id == refund_id))).one()


async def events(order_id: str, kind: str) -> list[PaymentEvent]:
    async with session_scope() as s:
        stmt = select(PaymentEvent).where(PaymentEvent.order_id == order_id, PaymentEvent.kind == kind)
        return list((await s.exec(stmt)).all())


async def notices(acc: str, ref: str) -> int:
    async with session_scope() as s:
        rows = await s.exec(
            select(Notification).where(
                Notification.account_id == acc, Notification.template == "sweeptest.paid"
            )
        )
        return sum(1 for n in rows.all() if n.params.get("ref") == ref)


async def eventually(check: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def lose_jobs(session: AsyncSession, task_name: str, key: str, value: str) -> int:
    """Delete, in ``session``'s transaction, the jobs written for ``value``: as if Redis had lost them
    and nothing was left to send them again."""
    rows = (await session.exec(select(OutboxMessage).where(OutboxMessage.task_name == task_name))).all()
    lost = [r for r in rows if r.arguments.get(key) == value or value in (r.arguments.get(key + "s") or [])]
    for row in lost:
        await session.delete(row)
    await session.flush()
    return len(lost)


async def paid_with_lost_job(ledger: Any, client: Any, headers: dict[str, str], order: PaymentOrder) -> None:
    """Paid at the provider (its notification held back); the ledger learns it from the pending
    sweep's query and commits, and the job that should tell the column is lost."""
    await pay_at_provider(ledger, client, headers, order, hold=True)
    async with sessionmaker()() as s:
        assert await sweeps.sweep_order(s, order_id=order.id) == "applied"
        assert await lose_jobs(s, "payments.notify_column", "order_id", order.id) == 1
        await s.commit()
    await asyncio.sleep(0.3)  # nothing else may tell the column: the job is gone
    paid = await load(order.id)
    assert paid.status == OrderStatus.PAID and paid.column_notified_at is None
    assert order.id not in CALLS


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there: connection refused


def unreachable(provider: Any) -> Any:
    """The same merchant, configured against a port nobody listens on."""
    url = closed_port_url()
    if isinstance(provider, WeChatPayV2Provider):
        return WeChatPayV2Provider(replace(provider.config, base_url=url, timeout_s=2.0))
    if isinstance(provider, WeChatPayV3Provider):
        return WeChatPayV3Provider(replace(provider.config, base_url=url, timeout_s=2.0))
    assert isinstance(provider, AlipayProvider)
    return AlipayProvider(replace(provider.config, server_url=f"{url}/gateway.do", timeout_s=2))


async def at_provider(ledger: Any, provider: str, out_trade_no: str) -> dict[str, int]:
    """The refunds the provider's sandbox holds for the trade: refund number -> amount (fen)."""
    async with httpx.AsyncClient(base_url=ledger.servers[provider].url, timeout=30) as c:
        r = await c.get(f"/_sandbox/orders/{out_trade_no}")
        r.raise_for_status()
    found: dict[str, Any] = r.json()["refunds"]
    # WeChat Pay v2: {"refund_fee", "status"}; v3: {"refund", "status"}; Alipay: the amount.
    return {
        k: int(v["refund_fee"] if "refund_fee" in v else v["refund"]) if isinstance(v, dict) else int(v)
        for k, v in found.items()
    }


async def refund_with_lost_job(order: PaymentOrder, amount: int) -> PaymentRefund:
    async with sessionmaker()() as s:
        refund, created = await refunds.request_refund(
            s,
            order_id=order.id,
            amount_fen=amount,
            out_refund_no="SW" + secrets.token_hex(8),
            reason="多缴退还",
            source="finance",
            actor_id=None,
        )
        assert created
        assert await lose_jobs(s, "payments.submit_refund", "refund_id", refund.id) == 1
        await s.commit()
        return refund


# -- paid, column never told ------------------------------------------------------------------------


async def test_lost_handoff_is_told_once_by_the_sweep(ledger, client, login):
    headers = await login()
    acc = await account_id(client, headers)
    order = await new_order(acc, "wechat_v2", purpose="sweeptest.slow")
    await paid_with_lost_job(ledger, client, headers, order)

    # With the settings' delay (a minute), a payment a moment old is still left to its job.
    await tasks.sweep_handoffs()
    assert (await load(order.id)).column_notified_at is None and order.id not in CALLS

    # Two sweeps at the same moment, then one more: the column hears of the payment once.
    runs = await asyncio.gather(tasks.sweep_handoffs(older_than_s=0), tasks.sweep_handoffs(older_than_s=0))
    again = await tasks.sweep_handoffs(older_than_s=0)
    assert CALLS.count(order.id) == 1
    assert sum(r["told"] for r in runs) >= 1 and all(r["failed"] == 0 for r in (*runs, again))
    assert sum(r["already"] for r in runs) >= 1  # the other sweep met the order, and found it told
    told = await events(order.id, "column_notified")
    assert [e.source for e in told] == ["sweep"]
    assert (await load(order.id)).column_notified_at is not None
    assert await notices(acc, order.purpose_ref) == 1  # one notice to the resident


async def test_sweep_and_job_at_the_same_moment_tell_once(ledger, client, login):
    """The job's retry (or the relay) and the sweep reach the same order together: once."""
    headers = await login()
    acc = await account_id(client, headers)
    orders = [await new_order(acc, p, purpose="sweeptest.slow") for p in PROVIDERS]
    for order in orders:
        await paid_with_lost_job(ledger, client, headers, order)

    await asyncio.gather(
        *(tasks.notify_column(o.id) for o in orders),
        tasks.sweep_handoffs(older_than_s=0),
        tasks.sweep_handoffs(older_than_s=0),
        *(tasks.notify_column(o.id) for o in orders),
    )
    for order in orders:
        assert CALLS.count(order.id) == 1
        assert len(await events(order.id, "column_notified")) == 1
        assert await notices(acc, order.purpose_ref) == 1


async def test_a_failing_handler_does_not_stop_the_sweep(ledger, client, login):
    headers = await login()
    acc = await account_id(client, headers)
    bad = await new_order(acc, "alipay", purpose="sweeptest.slow")
    good = await new_order(acc, "wechat_v3", purpose="sweeptest.slow")
    BROKEN.add(bad.purpose_ref)
    try:
        await paid_with_lost_job(ledger, client, headers, bad)  # paid first: the oldest, swept first
        await paid_with_lost_job(ledger, client, headers, good)
        counts = await tasks.sweep_handoffs(older_than_s=0)
        assert counts["failed"] >= 1 and counts["told"] >= 1
        assert (await load(good.id)).column_notified_at is not None
        assert (await load(bad.id)).column_notified_at is None  # its claim was rolled back
        assert await events(bad.id, "column_notified") == []
    finally:
        BROKEN.discard(bad.purpose_ref)
    # Fixed: the next run tells it, once.
    await tasks.sweep_handoffs(older_than_s=0)
    assert (await load(bad.id)).column_notified_at is not None
    assert len(await events(bad.id, "column_notified")) == 1
    assert await notices(acc, bad.purpose_ref) == 1 and await notices(acc, good.purpose_ref) == 1


async def test_a_sweep_out_of_time_leaves_the_rest_to_the_next(ledger, client, login):
    headers = await login()
    acc = await account_id(client, headers)
    order = await new_order(acc, "alipay", purpose="sweeptest.slow")
    await paid_with_lost_job(ledger, client, headers, order)
    counts = await sweeps.sweep_handoffs(older_than_s=0, limit=500, budget_s=0)
    assert counts["left"] >= 1 and counts["told"] == 0
    assert (await load(order.id)).column_notified_at is None
    await tasks.sweep_handoffs(older_than_s=0)
    assert (await load(order.id)).column_notified_at is not None and CALLS.count(order.id) == 1


async def test_purpose_without_handler_is_left_alone(ledger, client, login):
    """A column that is not installed: the sweep neither fails on it nor lets it fill the batch."""
    headers = await login()
    acc = await account_id(client, headers)
    orphan = await new_order(acc, "wechat_v2", purpose="nocolumn.fee")
    await paid_with_lost_job(ledger, client, headers, orphan)
    async with session_scope() as s:
        ids = await sweeps.unnotified_paid_order_ids(s, paid_before=utcnow(), limit=10_000)
    assert orphan.id not in ids
    counts = await tasks.sweep_handoffs(older_than_s=0)
    assert counts["failed"] == 0
    assert (await load(orphan.id)).column_notified_at is None


# -- refunds ------------------------------------------------------------------------------------------


async def paid_order(ledger: Any, client: Any, headers: dict[str, str], provider: str) -> PaymentOrder:
    order = await new_order(await account_id(client, headers), provider, purpose="testcol.bill")
    await pay_at_provider(ledger, client, headers, order)

    async def paid() -> bool:
        return (await load(order.id)).status == OrderStatus.PAID

    await eventually(paid)
    return order


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refund_failed_while_provider_down_is_submitted_by_the_sweep(ledger, client, login, provider):
    headers = await login()
    order = await paid_order(ledger, client, headers, provider)
    registry.configure(
        {**ledger.providers, provider: unreachable(ledger.providers[provider])}, notify_base=ledger.url
    )
    try:
        refund = await refund_with_lost_job(order, 300)
        second = await refund_with_lost_job(order, 200)
        # The job's attempt fails: the provider cannot be reached (then the job is lost or gives up).
        with pytest.raises(ProviderError) as failed:
            async with session_scope() as s:
                await refunds.submit_refund(s, refund_id=refund.id)
        assert failed.value.retryable
        # The sweep, while the provider is still down: tries once, records why, keeps the refunds;
        # the provider's other refunds wait for the next run instead of each waiting for a timeout.
        counts = await tasks.sweep_refunds(submit_after_s=0)
        assert counts.get("provider_error", 0) >= 1 and counts.get("provider_down", 0) >= 1
        down = await load_refund(refund.id)
        assert down.status == RefundStatus.REQUESTED and down.last_error
        assert (await load_refund(second.id)).status == RefundStatus.REQUESTED
        # Finance sees why the refund waits.
        finance = await login(roles=["finance"])
        listed = await client.get(f"/api/v1/payments/finance/orders/{order.id}/refunds", headers=finance)
        assert listed.status_code == 200, listed.text
        waiting = {r["id"]: r for r in listed.json()}[refund.id]
        assert waiting["status"] == "requested" and waiting["last_error"] == down.last_error
    finally:
        registry.configure(ledger.providers, notify_base=ledger.url)
    assert await at_provider(ledger, provider, order.out_trade_no) == {}  # nothing reached it

    # Back: the sweep submits it; two more at the same moment change nothing.
    await tasks.sweep_refunds(submit_after_s=0)
    await asyncio.gather(tasks.sweep_refunds(submit_after_s=0), tasks.sweep_refunds(submit_after_s=0))

    async def settled() -> bool:
        statuses = [(await load_refund(r.id)).status for r in (refund, second)]
        return statuses == [RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED]

    await eventually(settled)
    expected = {refund.out_refund_no: 300, second.out_refund_no: 200}
    assert await at_provider(ledger, provider, order.out_trade_no) == expected
    after = await load(order.id)
    assert after.refunded_fen == 500 and after.status == OrderStatus.PARTIALLY_REFUNDED
    await tasks.sweep_refunds(submit_after_s=0, query_after_s=0)
    assert (await load(order.id)).refunded_fen == 500
    assert (await load_refund(refund.id)).last_error is None
    listed = await client.get(f"/api/v1/payments/finance/orders/{order.id}/refunds", headers=finance)
    assert {r["id"]: r["last_error"] for r in listed.json()}[refund.id] is None


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refund_whose_answer_was_lost_is_counted_once(ledger, client, login, provider):
    """The submission reached the provider but its answer never came back (a timeout; the worker
    died): the sweep submits it again under the same number, which the provider answers with the
    same refund, and the ledger counts it once."""
    headers = await login()
    order = await paid_order(ledger, client, headers, provider)
    refund = await refund_with_lost_job(order, 400)
    await ledger.providers[provider].refund(
        RefundRequest(
            out_trade_no=order.out_trade_no,
            out_refund_no=refund.out_refund_no,
            total_fen=order.amount_fen,
            refund_fen=400,
            notify_url=notify_url(provider),
        )
    )
    runs = await asyncio.gather(*(tasks.sweep_refunds(submit_after_s=0) for _ in range(3)))
    assert all(r.get("error", 0) == 0 for r in runs)

    async def settled() -> bool:
        return (await load_refund(refund.id)).status == RefundStatus.SUCCEEDED

    await eventually(settled)
    await asyncio.sleep(0.3)  # the provider's notifications of the refund have arrived too
    assert await at_provider(ledger, provider, order.out_trade_no) == {refund.out_refund_no: 400}
    after = await load(order.id)
    assert after.refunded_fen == 400 and after.status == OrderStatus.PARTIALLY_REFUNDED
    assert len([e for e in await events(order.id, "transition") if e.to_status == "partially_refunded"]) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_refund_the_provider_refuses_ends_failed(ledger, client, login, provider):
    """The provider says the refund is not possible (the money was already refunded elsewhere): the
    sweep leaves it ``failed``, with the reason, for finance; not ``requested`` for ever."""
    headers = await login()
    order = await paid_order(ledger, client, headers, provider)
    await ledger.providers[provider].refund(  # refunded in full outside the ledger (the merchant console)
        RefundRequest(
            out_trade_no=order.out_trade_no,
            out_refund_no="CONSOLE" + secrets.token_hex(6),
            total_fen=order.amount_fen,
            refund_fen=order.amount_fen,
        )
    )
    refund = await refund_with_lost_job(order, 200)
    counts = await tasks.sweep_refunds(submit_after_s=0)
    assert counts.get("failed", 0) >= 1
    failed = await load_refund(refund.id)
    assert failed.status == RefundStatus.FAILED and failed.last_error
    assert [e.data["out_refund_no"] for e in await events(order.id, "refund_failed")] == [
        refund.out_refund_no
    ]
    assert (await load(order.id)).refunded_fen == 0
    await tasks.sweep_refunds(submit_after_s=0, query_after_s=0)  # a failed refund is left alone
    assert len(await events(order.id, "refund_failed")) == 1


ABNORMAL = {"wechat_v2": "CHANGE", "wechat_v3": "ABNORMAL"}  # the payer's card could not take it
CLOSED = {"wechat_v2": "REFUNDCLOSE", "wechat_v3": "CLOSED"}


async def processing_refund(
    ledger: Any, client: Any, headers: dict[str, str], provider: str, amount: int
) -> Any:
    """A paid order (1,000 fen) and a refund the provider has accepted and not settled yet."""
    order = await paid_order(ledger, client, headers, provider)
    sandbox = ledger.sandboxes[provider]
    sandbox.auto_settle_refunds = False
    try:
        async with session_scope() as s:
            refund, _ = await refunds.request_refund(
                s,
                order_id=order.id,
                amount_fen=amount,
                out_refund_no="SQ" + secrets.token_hex(8),
                reason=None,
                source="finance",
                actor_id=None,
            )

        async def processing() -> bool:
            return (await load_refund(refund.id)).status == RefundStatus.PROCESSING

        await eventually(processing)  # submitted by its job
    finally:
        sandbox.auto_settle_refunds = True
    return order, refund


async def refundable_when_all_is_asked(order: PaymentOrder) -> int:
    """Finance asks to refund the whole order while part of it is set aside: the ledger refuses,
    naming what may still be refunded."""
    async with session_scope() as s:
        with pytest.raises(RefundExceedsPaid) as refused:
            await refunds.request_refund(
                s,
                order_id=order.id,
                amount_fen=order.amount_fen,
                out_refund_no="SQ" + secrets.token_hex(8),
                reason=None,
                source="finance",
                actor_id=None,
            )
    return int(refused.value.extra["refundable_fen"])


async def flags(order_id: str, reason: str) -> list[PaymentEvent]:
    return [e for e in await events(order_id, "flagged") if e.data.get("reason") == reason]


@pytest.mark.parametrize("outcome", ["SUCCESS", "closed", "abnormal"])
@pytest.mark.parametrize("provider", ["wechat_v2", "wechat_v3"])
async def test_processing_refund_whose_notification_was_lost_is_asked_about(
    ledger, client, login, provider, outcome
):
    """WeChat Pay accepts a refund and settles it later; the notification of the result is lost.
    The sweep asks the provider and applies the answer once: paid back, closed (the amount can be
    refunded again), or abnormal (the money left the merchant and did not reach the payer: it stays
    set aside, and finance is told once)."""
    headers = await login()
    order, refund = await processing_refund(ledger, client, headers, provider, 250)
    status = {"SUCCESS": "SUCCESS", "closed": CLOSED[provider], "abnormal": ABNORMAL[provider]}[outcome]
    await control(
        ledger.servers[provider],
        "/_sandbox/refunds/settle",
        out_refund_no=refund.out_refund_no,
        status=status,
        hold=True,  # the notification never arrives
    )
    assert (await load_refund(refund.id)).status == RefundStatus.PROCESSING
    await tasks.sweep_refunds(query_after_s=3600)
    assert (await load_refund(refund.id)).status == RefundStatus.PROCESSING  # not due yet

    await asyncio.gather(*(tasks.sweep_refunds(query_after_s=0) for _ in range(2)))
    swept = await load_refund(refund.id)
    after = await load(order.id)
    if outcome == "SUCCESS":
        assert swept.status == RefundStatus.SUCCEEDED
        assert after.refunded_fen == 250 and after.status == OrderStatus.PARTIALLY_REFUNDED
    elif outcome == "closed":
        assert swept.status == RefundStatus.FAILED and swept.last_error
        assert after.refunded_fen == 0 and after.status == OrderStatus.PAID
        assert len(await events(order.id, "refund_failed")) == 1
    else:
        assert swept.status == RefundStatus.ABNORMAL and "商户平台" in (swept.last_error or "")
        assert after.refunded_fen == 0 and after.status == OrderStatus.PAID
        assert await events(order.id, "refund_failed") == []
        await tasks.sweep_refunds(submit_after_s=0, query_after_s=0)  # finance's now, not the sweep's
        [flagged] = await flags(order.id, "refund_abnormal")
        assert flagged.data["out_refund_no"] == refund.out_refund_no and flagged.data["amount_fen"] == 250
        # Its 250 fen are not refundable again: the provider still counts them as refunded.
        assert await refundable_when_all_is_asked(order) == 750


@pytest.mark.parametrize("learnt", ["notification", "finance_check"])
@pytest.mark.parametrize("provider", ["wechat_v2", "wechat_v3"])
async def test_abnormal_refund_is_finances_until_the_provider_settles_it(
    ledger, client, login, provider, learnt
):
    """The provider tells us the refund did not reach the payer (their card was cancelled). Finance
    sees it ``abnormal`` with the reason and cannot refund that money a second time. Once finance
    has handled it at the provider's merchant platform the order is refunded, once: told by the
    provider's second notification, or (that notification lost) when finance asks for the result."""
    headers = await login()
    finance = await login(roles=["finance"])
    order, refund = await processing_refund(ledger, client, headers, provider, 400)
    server = ledger.servers[provider]
    settle = "/_sandbox/refunds/settle"
    await control(server, settle, out_refund_no=refund.out_refund_no, status=ABNORMAL[provider])

    async def abnormal() -> bool:
        return (await load_refund(refund.id)).status == RefundStatus.ABNORMAL

    await eventually(abnormal)  # by the provider's notification
    listed = (await client.get(f"/api/v1/payments/finance/orders/{order.id}/refunds", headers=finance)).json()
    assert [(r["status"], r["amount_fen"]) for r in listed] == [("abnormal", 400)]
    assert "用户的收款账户不可用" in listed[0]["last_error"]
    too_much = await client.post(
        f"/api/v1/payments/finance/orders/{order.id}/refunds",
        headers=finance,
        json={"amount_fen": 700, "out_refund_no": "RA" + secrets.token_hex(8)},
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "payments.refund_exceeds_paid"

    check = f"/api/v1/payments/finance/refunds/{refund.id}/check"
    assert (await client.post(check, headers=headers)).status_code == 403  # residents may not
    still = await client.post(check, headers=finance)  # not handled at the provider yet
    assert still.status_code == 200 and still.json()["status"] == "abnormal"
    assert len(await flags(order.id, "refund_abnormal")) == 1

    # Finance has the provider pay it to the payer's other account.
    if learnt == "notification":
        await control(server, settle, out_refund_no=refund.out_refund_no, status="SUCCESS")

        async def succeeded() -> bool:
            return (await load_refund(refund.id)).status == RefundStatus.SUCCEEDED

        await eventually(succeeded)
        assert (await client.post(check, headers=finance)).json()["status"] == "succeeded"
    else:
        await control(server, settle, out_refund_no=refund.out_refund_no, status="SUCCESS", hold=True)
        done = await asyncio.gather(*(client.post(check, headers=finance) for _ in range(2)))
        assert [r.json()["status"] for r in done] == ["succeeded", "succeeded"]
    after = await load(order.id)
    assert after.refunded_fen == 400 and after.status == OrderStatus.PARTIALLY_REFUNDED
    refunded = [e for e in await events(order.id, "transition") if e.data.get("out_refund_no")]
    assert [e.data["out_refund_no"] for e in refunded] == [refund.out_refund_no]
    assert (await at_provider(ledger, provider, order.out_trade_no)) == {refund.out_refund_no: 400}

    missing = await client.post("/api/v1/payments/finance/refunds/nosuchrefund/check", headers=finance)
    assert missing.status_code == 404 and missing.json()["code"] == "payments.refund_not_found"
    assert missing.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("provider", ["wechat_v2", "wechat_v3"])
async def test_a_refund_status_we_do_not_know_settles_nothing(ledger, client, login, provider):
    """A correctly signed refund notification with a status this ledger does not know is kept and
    answered, and changes nothing: the refund stays ``processing`` (the sweep asks again), and its
    amount stays set aside. Before, it counted as failed and the amount was refundable again."""
    headers = await login()
    order, refund = await processing_refund(ledger, client, headers, provider, 300)
    await control(
        ledger.servers[provider],
        "/_sandbox/refunds/settle",
        out_refund_no=refund.out_refund_no,
        status="SUSPENDED",
    )

    async def told() -> bool:
        async with session_scope() as s:
            rows = await s.exec(select(PaymentNotification).where(PaymentNotification.order_id == order.id))
            return any(n.kind == "refund" for n in rows.all())

    await eventually(told)
    assert (await load_refund(refund.id)).status == RefundStatus.PROCESSING
    assert await events(order.id, "refund_failed") == []
    assert await refundable_when_all_is_asked(order) == 700
