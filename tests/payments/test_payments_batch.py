"""Group commit: notifications applied together give each the answer it would get alone."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets

from payments_helpers import PAID_CALLS, wait_for
from sqlmodel import col, select
from test_payments_ledger import account_id, load, new_order

from app_api.core.db import session_scope
from app_api.platform.audit import verify_chain
from payments.batch import NotificationBatcher
from payments.ledger import transition
from payments.models import OrderStatus, PaymentEvent, PaymentNotification, PaymentOrder
from payments.notifications import ReceivedNotification, apply_notification, apply_notifications
from payments.orders import create_order
from payments.providers.base import Notification, NotificationKind, ProviderName, TradeState


def paid_note(order: PaymentOrder, *, amount: int | None = None, txn: str | None = None) -> Notification:
    return Notification(
        provider=ProviderName(order.provider),
        kind=NotificationKind.PAYMENT,
        out_trade_no=order.out_trade_no,
        transaction_id=txn or "42" + secrets.token_hex(12),
        app_id="wx-test",
        merchant_id="1900000109",
        amount_fen=order.amount_fen if amount is None else amount,
        trade_state=TradeState.PAID,
    )


def received(note: Notification) -> ReceivedNotification:
    return ReceivedNotification(note=note, body=b"<xml>signed</xml>", headers={"content-type": "text/xml"})


async def test_a_mixed_batch_gets_the_one_at_a_time_answers(ledger, client, login):
    me = await account_id(client, await login())
    plain = [await new_order(me, "wechat_v2", amount=1000 + i) for i in range(3)]
    wrong_amount = await new_order(me, "wechat_v2", amount=5000)
    ref = "SAME" + secrets.token_hex(4)
    twin_a = await new_order(me, "wechat_v2", ref=ref, amount=3300)
    twin_b = await new_order(me, "wechat_v2", ref=ref, amount=3300)
    late = await new_order(me, "alipay", amount=700)
    async with session_scope() as s:  # expired and closed here before the money arrived
        row = (await s.exec(select(PaymentOrder).where(PaymentOrder.id == late.id))).one()
        await transition(s, row, OrderStatus.CLOSED, source="test")
    stranger = Notification(
        provider=ProviderName.WECHAT_V2,
        kind=NotificationKind.PAYMENT,
        out_trade_no="WJNOSUCHORDER" + secrets.token_hex(4),
        transaction_id="42" + secrets.token_hex(12),
        app_id="wx-test",
        merchant_id="1900000109",
        amount_fen=100,
        trade_state=TradeState.PAID,
    )
    already = paid_note(plain[0])
    async with session_scope() as s:  # one of them was applied before the batch: its copy is a duplicate
        first = await apply_notification(s, note=already, body=b"x", headers={})
    assert first.outcome == "applied"

    notes = [
        already,
        paid_note(plain[1]),
        paid_note(plain[2]),
        paid_note(wrong_amount, amount=4999),
        paid_note(twin_a),
        paid_note(twin_b),
        paid_note(late),
        stranger,
    ]
    async with session_scope() as s:
        outcomes = await apply_notifications(s, [received(n) for n in notes])

    assert [o.outcome for o in outcomes] == [
        "duplicate",
        "applied",
        "applied",
        "flagged_amount",
        "applied",
        "applied_duplicate_purpose",
        "applied_late",
        "unknown_order",
    ]
    assert (await load(plain[1].id)).status == "paid"
    assert (await load(plain[1].id)).provider_txn_id == notes[1].transaction_id
    assert (await load(wrong_amount.id)).status == "created"  # never credited
    assert (await load(late.id)).status == "paid"  # money arrived after closing: still real money
    async with session_scope() as s:
        stored = {
            n.dedupe_key: n
            for n in (
                await s.exec(
                    select(PaymentNotification).where(
                        col(PaymentNotification.dedupe_key).in_([n.dedupe_key for n in notes])
                    )
                )
            ).all()
        }
        transitions = (
            await s.exec(
                select(PaymentEvent).where(
                    col(PaymentEvent.order_id).in_([plain[1].id, plain[2].id]),
                    PaymentEvent.to_status == "paid",
                )
            )
        ).all()
        report = await verify_chain(s)
    assert stored[already.dedupe_key].times_received == 2
    assert stored[notes[3].dedupe_key].outcome == "flagged_amount"
    assert (
        stored[stranger.dedupe_key].outcome == "unknown_order"
        and stored[stranger.dedupe_key].order_id is None
    )
    assert stored[notes[1].dedupe_key].order_id == plain[1].id
    assert len(transitions) == 2
    assert report.ok, report
    for order in (plain[1], plain[2], twin_a, twin_b, late):  # each paid order's column is told once
        await wait_for(lambda order=order: (order.id, order.purpose_ref) in PAID_CALLS)


async def test_concurrent_notifications_share_transactions_and_each_is_answered(ledger, client, login):
    me = await account_id(client, await login())
    orders = [await new_order(me, "alipay", amount=200 + i) for i in range(40)]
    notes = [paid_note(o) for o in orders]
    batcher = NotificationBatcher(max_batch=16)
    # Every notification twice, all at once: each copy is answered, each order credited once.
    outcomes = await asyncio.gather(*(batcher.apply(n, b"body", {}) for n in notes + notes))
    assert sorted(o.outcome for o in outcomes) == ["applied"] * 40 + ["duplicate"] * 40
    assert batcher.batches < 80 and batcher.largest > 1  # grouped, not one transaction each
    assert batcher.largest <= 16
    for order in orders:
        assert (await load(order.id)).status == "paid"
        await wait_for(lambda order=order: (order.id, order.purpose_ref) in PAID_CALLS)
    await asyncio.sleep(0.2)
    assert all(PAID_CALLS.count((o.id, o.purpose_ref)) == 1 for o in orders)


async def test_a_failing_batch_is_applied_one_by_one(ledger, client, login):
    me = await account_id(client, await login())
    good = [await new_order(me, "wechat_v2", amount=900 + i) for i in range(3)]
    bad = await new_order(me, "wechat_v2", amount=1234)
    # A notification the database cannot take (a payment time without its time zone) fails the
    # whole batch; the others must still be applied, and only the bad one reported as failed.
    broken = paid_note(bad)
    object.__setattr__(broken, "paid_at", dt.datetime(2026, 11, 22, 8, 0))
    batcher = NotificationBatcher()
    results = await asyncio.gather(
        batcher.apply(paid_note(good[1]), b"b", {}),
        batcher.apply(broken, b"b", {}),
        batcher.apply(paid_note(good[2]), b"b", {}),
        return_exceptions=True,
    )
    assert [getattr(r, "outcome", None) for r in results] == ["applied", None, "applied"]
    assert "naive datetime" in str(results[1])
    assert batcher.batches == 1  # they were tried together first
    assert (await load(good[1].id)).status == "paid" and (await load(good[2].id)).status == "paid"
    assert (await load(bad.id)).status == "created"
    async with session_scope() as s:
        stored = (
            await s.exec(select(PaymentNotification).where(PaymentNotification.order_id == bad.id))
        ).all()
    assert stored == []  # nothing half-written: the provider's retry starts from scratch


FLAKY_TRIES: dict[str, int] = {}


async def test_one_failing_column_handler_does_not_hold_back_the_batch(ledger, client, login):
    from app_api.platform import audit
    from app_api.platform.audit.models import AuditEvent
    from payments.hooks import on_paid

    @on_paid("testcol.flaky")
    async def flaky(session, paid) -> None:
        # Writes something that must vanish with the failed attempt, then fails the first time.
        FLAKY_TRIES[paid.purpose_ref] = FLAKY_TRIES.get(paid.purpose_ref, 0) + 1
        await audit.record(session, action="testcol.flaky_told", subject_id=paid.order_id)
        if FLAKY_TRIES[paid.purpose_ref] == 1:
            raise RuntimeError("biller briefly unavailable")
        PAID_CALLS.append((paid.order_id, paid.purpose_ref))

    me = await account_id(client, await login())
    steady = [await new_order(me, "alipay", amount=300 + i) for i in range(4)]
    async with session_scope() as s:
        shaky = await create_order(
            s,
            account_id=me,
            purpose="testcol.flaky",
            purpose_ref="F" + secrets.token_hex(6),
            amount_fen=4200,
            description="电费",
            provider="alipay",
            channel="miniprogram",
        )
    async with session_scope() as s:
        outcomes = await apply_notifications(s, [received(paid_note(o)) for o in [*steady, shaky]])
    assert {o.outcome for o in outcomes} == {"applied"}
    for order in [*steady, shaky]:  # the steady ones at once, the shaky one on its own retry
        await wait_for(lambda order=order: (order.id, order.purpose_ref) in PAID_CALLS)
    await asyncio.sleep(0.2)
    assert FLAKY_TRIES[shaky.purpose_ref] == 2
    assert all(PAID_CALLS.count((o.id, o.purpose_ref)) == 1 for o in [*steady, shaky])
    async with session_scope() as s:
        told = (
            await s.exec(
                select(PaymentEvent).where(
                    col(PaymentEvent.order_id).in_([o.id for o in [*steady, shaky]]),
                    PaymentEvent.kind == "column_notified",
                )
            )
        ).all()
        audited = (
            await s.exec(
                select(AuditEvent).where(
                    AuditEvent.action == "testcol.flaky_told", AuditEvent.subject_id == shaky.id
                )
            )
        ).all()
    assert len(told) == 5
    assert len(audited) == 1  # the failed attempt's audit entry was rolled back with it


async def test_one_purpose_paid_by_two_transactions_at_once_is_flagged_once(ledger, client, login):
    """Two orders for one bill, their payments applied by two transactions at the same moment.

    Finance must see the second payment as a duplicate, whichever commits first; reading "is this
    purpose paid?" in each transaction would let both through unflagged.
    """
    me = await account_id(client, await login())
    for _ in range(6):
        ref = "RACE" + secrets.token_hex(4)
        a = await new_order(me, "wechat_v2", ref=ref, amount=2100)
        b = await new_order(me, "wechat_v2", ref=ref, amount=2100)

        async def apply(order: PaymentOrder) -> str:
            async with session_scope() as s:
                return (await apply_notifications(s, [received(paid_note(order))]))[0].outcome

        outcomes = await asyncio.gather(apply(a), apply(b))
        assert sorted(outcomes) == ["applied", "applied_duplicate_purpose"], outcomes
        rows = {o.id: o for o in (await load(a.id), await load(b.id))}
        assert all(o.status == OrderStatus.PAID.value for o in rows.values())
        second = [o for o in rows.values() if o.duplicate_of is not None]
        assert len(second) == 1 and second[0].duplicate_of in rows and second[0].duplicate_of != second[0].id
        async with session_scope() as s:
            flags = (
                await s.exec(
                    select(PaymentEvent).where(
                        col(PaymentEvent.order_id).in_(list(rows)), PaymentEvent.kind == "flagged"
                    )
                )
            ).all()
        assert [f.order_id for f in flags] == [second[0].id]


async def test_identical_notifications_in_two_workers_batches_at_once_credit_once(ledger, client, login):
    """Two api workers (two batchers) apply the same notifications in two transactions at once.

    Each worker's batch holds every copy once, so only the database can decide: every order is
    credited once, each copy gets one "applied" and one "duplicate" answer, and each column is told once.
    """
    me = await account_id(client, await login())
    orders = [await new_order(me, "wechat_v2", amount=700 + i) for i in range(8)]
    notes = [paid_note(o) for o in orders]

    async def apply(batch: list[Notification]) -> list[str]:
        async with session_scope() as s:
            return [o.outcome for o in await apply_notifications(s, [received(n) for n in batch])]

    first, second = await asyncio.gather(apply(notes), apply(list(reversed(notes))))
    for i in range(len(notes)):
        assert sorted([first[i], second[len(notes) - 1 - i]]) == ["applied", "duplicate"], (first, second)
    for order in orders:
        await wait_for(lambda order=order: (order.id, order.purpose_ref) in PAID_CALLS)
    await asyncio.sleep(0.3)  # a second hand-off, if there were one, would have run by now
    ids = [o.id for o in orders]
    async with session_scope() as s:
        rows = (await s.exec(select(PaymentOrder).where(col(PaymentOrder.id).in_(ids)))).all()
        paid = (
            await s.exec(
                select(PaymentEvent).where(
                    col(PaymentEvent.order_id).in_(ids), PaymentEvent.to_status == "paid"
                )
            )
        ).all()
        stored = (
            await s.exec(select(PaymentNotification).where(col(PaymentNotification.order_id).in_(ids)))
        ).all()
    by_id = {o.id: o for o in orders}
    assert all(r.status == "paid" and r.duplicate_of is None for r in rows)
    assert {r.provider_txn_id for r in rows} == {n.transaction_id for n in notes}
    assert sorted(e.order_id for e in paid) == sorted(ids)  # one transition each
    assert sorted(n.order_id for n in stored) == sorted(ids) and {n.times_received for n in stored} == {2}
    assert all(PAID_CALLS.count((i, by_id[i].purpose_ref)) == 1 for i in ids)


async def test_a_batch_credits_the_amounts_in_fen_and_the_paid_time_given(ledger, client, login):
    """The bulk path writes what the notification said: its transaction, its paid time (UTC)."""
    me = await account_id(client, await login())
    order = await new_order(me, "alipay", amount=12345)
    at = dt.datetime(2026, 5, 1, 8, 30, 15, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    note = Notification(
        provider=ProviderName.ALIPAY,
        kind=NotificationKind.PAYMENT,
        out_trade_no=order.out_trade_no,
        transaction_id="2026" + secrets.token_hex(10),
        app_id="2021000000000000",
        merchant_id="2088000000000000",
        amount_fen=12345,
        trade_state=TradeState.PAID,
        paid_at=at,
    )
    short = paid_note(await new_order(me, "alipay", amount=12345), amount=12344)  # one fen short
    async with session_scope() as s:
        outcomes = await apply_notifications(s, [received(note), received(short)])
    assert [o.outcome for o in outcomes] == ["applied", "flagged_amount"]
    paid = await load(order.id)
    assert paid.status == "paid" and paid.provider_txn_id == note.transaction_id
    assert paid.paid_at == at and paid.paid_at.utcoffset() == dt.timedelta(0)
    assert (await load(outcomes[1].order_id or "")).status != "paid"
