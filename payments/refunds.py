"""Refunds: recorded once per refund number, submitted by an outbox job, applied to the order once."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import lock_for_writing, savepoint, utcnow
from app_api.core.jobs import outbox
from app_api.core.money import fen_to_yuan
from app_api.platform import audit
from payments.errors import (
    IllegalTransition,
    OrderNotFound,
    RefundExceedsPaid,
    RefundNotFound,
    RefundNumberConflict,
)
from payments.ledger import event_for, flag, locked_order, transition
from payments.models import OrderStatus, PaymentEvent, PaymentOrder, PaymentRefund, RefundStatus
from payments.providers.base import (
    Notification,
    ProviderError,
    RefundRequest,
    RefundResult,
    RefundState,
)
from payments.registry import get_provider, notify_url

REFUNDS: sa.Table = SQLModel.metadata.tables["payments_refund"]
# Not submitted again: settled, or (abnormal) in finance's hands at the provider.
SETTLED_HERE = (RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.ABNORMAL)


async def request_refund(
    session: AsyncSession,
    *,
    order_id: str,
    amount_fen: int,
    out_refund_no: str,
    reason: str | None,
    source: str,
    actor_id: str | None,
) -> tuple[PaymentRefund, bool]:
    """Record a refund and queue its submission. Idempotent by ``out_refund_no``: (refund, created).

    The refundable amount is read under the order's lock (``FOR UPDATE`` on PostgreSQL, the database
    write lock on SQLite), so two refunds of one order are checked one after the other. The refund
    number is looked up under that lock too: a repeat sent at the same moment finds the first one.
    """
    order = await locked_order(session, order_id=order_id)
    existing = await _by_number(session, out_refund_no)
    if existing is not None:
        return _same_refund(existing, order_id=order_id, amount_fen=amount_fen), False
    if order is None:
        raise OrderNotFound(order_id=order_id)
    if OrderStatus(order.status) not in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED):
        raise IllegalTransition("只有已支付的订单可以退款", status=order.status)
    outstanding = await session.exec(
        select(sa.func.coalesce(sa.func.sum(PaymentRefund.amount_fen), 0)).where(
            PaymentRefund.order_id == order.id, PaymentRefund.status != RefundStatus.FAILED.value
        )
    )
    committed = int(outstanding.one())
    if amount_fen <= 0 or committed + amount_fen > order.amount_fen:
        raise RefundExceedsPaid(refundable_fen=order.amount_fen - committed)
    refund = PaymentRefund(
        order_id=order.id,
        out_refund_no=out_refund_no,
        amount_fen=amount_fen,
        reason=reason,
        requested_by=actor_id,
        source=source,
    )
    try:
        # The same number for another order is not covered by this order's lock (PostgreSQL).
        async with savepoint(session):
            session.add(refund)
            await session.flush()
    except sa.exc.IntegrityError:
        existing = await _by_number(session, out_refund_no)
        if existing is None:
            raise
        return _same_refund(existing, order_id=order_id, amount_fen=amount_fen), False
    await event_for(
        session,
        order.id,
        kind="refund_requested",
        source=source,
        actor_id=actor_id,
        data={"out_refund_no": out_refund_no, "amount_fen": amount_fen, "reason": reason},
    )
    await audit.record(
        session,
        action="payments.refund_requested",
        actor_id=actor_id,
        subject_type="payments_order",
        subject_id=order.id,
        data={"out_refund_no": out_refund_no, "amount_fen": amount_fen, "source": source},
    )
    await outbox.enqueue(session, "payments.submit_refund", refund_id=refund.id)
    return refund, True


async def _by_number(session: AsyncSession, out_refund_no: str) -> PaymentRefund | None:
    stmt = select(PaymentRefund).where(PaymentRefund.out_refund_no == out_refund_no)
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


def _same_refund(existing: PaymentRefund, *, order_id: str, amount_fen: int) -> PaymentRefund:
    """A repeated refund number: the recorded refund if it asks for the same, else a conflict."""
    if existing.order_id != order_id or existing.amount_fen != amount_fen:
        raise RefundNumberConflict(
            f"退款单号 {existing.out_refund_no} 已用于另一笔退款"
            f"（金额 {fen_to_yuan(existing.amount_fen)} 元），请使用新的退款单号",
            out_refund_no=existing.out_refund_no,
        )
    return existing


async def _locked_refund(session: AsyncSession, **where: str) -> PaymentRefund | None:
    await lock_for_writing(session)
    stmt = select(PaymentRefund).with_for_update().execution_options(populate_existing=True)
    for key, value in where.items():
        stmt = stmt.where(getattr(PaymentRefund, key) == value)
    return (await session.exec(stmt)).first()


async def refund_succeeded(
    session: AsyncSession, refund: PaymentRefund, *, source: str, provider_refund_id: str | None
) -> bool:
    """Apply a succeeded refund to its order exactly once (``refund`` locked). True if applied now."""
    if refund.status == RefundStatus.SUCCEEDED:
        return False
    order = await locked_order(session, order_id=refund.order_id)
    assert order is not None
    refund.status = RefundStatus.SUCCEEDED.value
    refund.succeeded_at = utcnow()
    refund.provider_refund_id = provider_refund_id or refund.provider_refund_id
    session.add(refund)
    order.refunded_fen += refund.amount_fen
    target = (
        OrderStatus.REFUNDED if order.refunded_fen >= order.amount_fen else OrderStatus.PARTIALLY_REFUNDED
    )
    await transition(
        session,
        order,
        target,
        source=source,
        data={
            "out_refund_no": refund.out_refund_no,
            "amount_fen": refund.amount_fen,
            "refunded_fen": order.refunded_fen,
        },
    )
    return True


async def submit_refund(session: AsyncSession, *, refund_id: str) -> str:
    """Send a recorded refund to the provider (outbox job, or the sweep). Safe to repeat: the refund
    number is the provider's idempotency key, so a repeat is answered with the same refund.

    The provider is called without holding a lock; the refund is then locked and read again, so a
    refund notification applied meanwhile is not applied a second time. A refusal the provider
    means (not a network or server error) ends the refund ``failed``, for finance to see.
    """
    refund = (await session.exec(select(PaymentRefund).where(PaymentRefund.id == refund_id))).first()
    if refund is None or refund.status in SETTLED_HERE:
        return "done"
    order = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == refund.order_id))).one()
    provider = get_provider(order.provider)
    try:
        result = await provider.refund(
            RefundRequest(
                out_trade_no=order.out_trade_no,
                out_refund_no=refund.out_refund_no,
                total_fen=order.amount_fen,
                refund_fen=refund.amount_fen,
                reason=refund.reason,
                notify_url=notify_url(order.provider),
                transaction_id=order.provider_txn_id,
            )
        )
    except ProviderError as exc:
        if exc.retryable:
            raise
        return await _refused(session, refund_id, exc)
    return await apply_refund_result(session, refund_id, result, source=f"refund:{order.provider}")


@runtime_checkable
class RefundQuerying(Protocol):
    """A provider that can be asked about a refund by its number (WeChat Pay v2 and v3)."""

    async def query_refund(self, out_refund_no: str) -> RefundResult: ...


# What the providers answer when asked about a refund they have never heard of.
REFUND_UNKNOWN_CODES = frozenset({"REFUNDNOTEXIST", "ORDERNOTEXIST"})


async def query_refund(session: AsyncSession, *, refund_id: str, source: str = "sweep") -> str:
    """Ask the provider about a submitted refund still ``processing`` here (the sweep), or one
    ``abnormal`` that finance has handled at the provider (finance's "check" action).

    Applied like its notification would be: succeeded once, or failed. A refund the provider does
    not know (the submission never arrived) and a provider that cannot be asked (Alipay refunds
    synchronously) are submitted again, under the same refund number.
    """
    refund = (await session.exec(select(PaymentRefund).where(PaymentRefund.id == refund_id))).first()
    if refund is None or refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return "done"
    order = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == refund.order_id))).one()
    provider = get_provider(order.provider)
    if not isinstance(provider, RefundQuerying):
        return await submit_refund(session, refund_id=refund_id)
    try:
        result = await provider.query_refund(refund.out_refund_no)
    except ProviderError as exc:
        if exc.code in REFUND_UNKNOWN_CODES:
            return await submit_refund(session, refund_id=refund_id)
        raise
    if result.refund_fen and result.refund_fen != refund.amount_fen:
        # Left ``processing`` for finance; flagged once, not at every run of the sweep.
        flagged = (
            await session.exec(
                select(PaymentEvent).where(PaymentEvent.order_id == order.id, PaymentEvent.kind == "flagged")
            )
        ).all()
        if any(
            e.data.get("reason") == "refund_amount" and e.data.get("out_refund_no") == refund.out_refund_no
            for e in flagged
        ):
            return "flagged_refund_amount"
        return await flag(
            session,
            order,
            "refund_amount",
            source,
            {
                "out_refund_no": refund.out_refund_no,
                "expected_fen": refund.amount_fen,
                "queried_fen": result.refund_fen,
            },
        )
    return await apply_refund_result(session, refund_id, result, source=source)


async def check_refund(session: AsyncSession, *, refund_id: str, actor_id: str) -> PaymentRefund:
    """Finance asks the provider now about a refund not settled here (see :func:`query_refund`)."""
    refund = await session.get(PaymentRefund, refund_id)
    if refund is None:
        raise RefundNotFound(refund_id=refund_id)
    before = refund.status
    outcome = await query_refund(session, refund_id=refund_id, source="finance")
    await audit.record(
        session,
        action="payments.refund_checked",
        actor_id=actor_id,
        subject_type="payments_order",
        subject_id=refund.order_id,
        data={"out_refund_no": refund.out_refund_no, "was": before, "outcome": outcome},
    )
    found = await session.get(PaymentRefund, refund_id, populate_existing=True)
    assert found is not None
    return found


async def apply_refund_result(
    session: AsyncSession, refund_id: str, result: RefundResult, *, source: str
) -> str:
    """Apply what the provider answered about a refund (submitted or queried), under the refund's lock."""
    refund = await _locked_order_then_refund(session, refund_id)
    if refund is None or refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return "done"
    refund.provider_refund_id = result.refund_id or refund.provider_refund_id
    if result.state is RefundState.ABNORMAL or (
        refund.status == RefundStatus.ABNORMAL and result.state is RefundState.PROCESSING
    ):
        # Abnormal, or PROCESSING while finance handles it at the provider: it stays with finance
        # (``abnormal``), not back in the sweep's hands.
        await _mark_abnormal(session, refund, source=source)
        return "abnormal"
    refund.last_error = None  # the provider has answered
    if result.state is RefundState.SUCCEEDED:
        await refund_succeeded(session, refund, source=source, provider_refund_id=result.refund_id)
        return "succeeded"
    if result.state in (RefundState.FAILED, RefundState.CLOSED):
        await _mark_failed(
            session, refund, source=source, error=f"provider reported {result.state}", code=str(result.state)
        )
        return "failed"
    refund.status = RefundStatus.PROCESSING.value
    session.add(refund)
    return "processing"


async def _locked_order_then_refund(session: AsyncSession, refund_id: str) -> PaymentRefund | None:
    """Lock the refund's order, then the refund: the order a refund notification locks them in
    (orders first), so a submission and a notification of one refund never wait on each other in a
    cycle (PostgreSQL would abort one of them as a deadlock)."""
    order_id = (
        await session.exec(select(PaymentRefund.order_id).where(PaymentRefund.id == refund_id))
    ).first()
    if order_id is None:
        return None
    await locked_order(session, order_id=order_id)
    return await _locked_refund(session, id=refund_id)


async def _refused(session: AsyncSession, refund_id: str, exc: ProviderError) -> str:
    refund = await _locked_order_then_refund(session, refund_id)
    if refund is None or refund.status in SETTLED_HERE:
        return "done"
    await _mark_failed(session, refund, source="provider", error=str(exc), code=exc.code)
    return "failed"


async def _mark_failed(
    session: AsyncSession, refund: PaymentRefund, *, source: str, error: str, code: str | None
) -> None:
    """The provider will not pay this refund back: ``failed`` (its amount is refundable again)."""
    refund.status = RefundStatus.FAILED.value
    refund.last_error = error[:300]
    session.add(refund)
    await event_for(
        session,
        refund.order_id,
        kind="refund_failed",
        source=source,
        data={"out_refund_no": refund.out_refund_no, "error": error[:200]},
    )
    await audit.record(
        session,
        action="payments.refund_failed",
        subject_type="payments_order",
        subject_id=refund.order_id,
        data={"out_refund_no": refund.out_refund_no, "code": code},
    )


async def _mark_abnormal(session: AsyncSession, refund: PaymentRefund, *, source: str) -> None:
    """The money is stuck between the merchant and the payer: ``abnormal``, its amount still set
    aside, and finance told once (a ``refund_abnormal`` flag on the order)."""
    if refund.status == RefundStatus.ABNORMAL:
        return
    refund.status = RefundStatus.ABNORMAL.value
    refund.last_error = "退款异常：用户的收款账户不可用，请在支付渠道的商户平台处理"
    session.add(refund)
    order = await locked_order(session, order_id=refund.order_id)
    assert order is not None  # a refund's order is never deleted
    await flag(
        session,
        order,
        "refund_abnormal",
        source,
        {"out_refund_no": refund.out_refund_no, "amount_fen": refund.amount_fen},
    )


async def note_refund_error(session: AsyncSession, *, refund_id: str, error: str) -> None:
    """Remember why the last attempt did not reach a verdict (shown to finance with the refund)."""
    await session.exec(
        sa.update(REFUNDS)
        .where(
            REFUNDS.c.id == refund_id,
            REFUNDS.c.status.in_([RefundStatus.REQUESTED.value, RefundStatus.PROCESSING.value]),
        )
        .values(last_error=error[:300])
    )


async def apply_refund_notification(session: AsyncSession, order: PaymentOrder, note: Notification) -> str:
    source = f"notification:{note.provider.value}"
    refund = await _locked_refund(session, out_refund_no=note.out_refund_no or "")
    if refund is None or refund.order_id != order.id:
        return await flag(
            session,
            order,
            "unknown_refund",
            source,
            {"out_refund_no": note.out_refund_no, "refund_fen": note.refund_fen},
        )
    if note.refund_fen is not None and note.refund_fen != refund.amount_fen:
        return await flag(
            session,
            order,
            "refund_amount",
            source,
            {
                "out_refund_no": refund.out_refund_no,
                "expected_fen": refund.amount_fen,
                "notified_fen": note.refund_fen,
            },
        )
    if note.refund_state is RefundState.SUCCEEDED:
        applied = await refund_succeeded(session, refund, source=source, provider_refund_id=note.refund_id)
        return "applied" if applied else "duplicate"
    if note.refund_state is RefundState.ABNORMAL and refund.status not in (
        RefundStatus.SUCCEEDED,
        RefundStatus.FAILED,
    ):
        already = refund.status == RefundStatus.ABNORMAL
        await _mark_abnormal(session, refund, source=source)
        return "duplicate" if already else "refund_abnormal"
    if note.refund_state in (RefundState.FAILED, RefundState.CLOSED) and refund.status not in (
        RefundStatus.SUCCEEDED,
        RefundStatus.FAILED,
    ):
        refund.status = RefundStatus.FAILED.value
        refund.last_error = f"provider reported {note.refund_state}"
        session.add(refund)
        await event_for(
            session,
            order.id,
            kind="refund_failed",
            source=source,
            data={"out_refund_no": refund.out_refund_no},
        )
        return "refund_failed"
    return "ignored"
