"""Collecting an item's fee through the payments package (purpose ``gov_services.fee``).

An item version whose guide carries a fee rule (:mod:`columns.gov_services.fees`) quotes the fee from
the application's form at submission. Charged at submission, the application waits in
``awaiting_payment`` before it reaches the department; charged at acceptance, the reviewer's
acceptance puts it there (the clock paused, as for a supplement). The resident pays with WeChat Pay
or Alipay: one payment order per attempt, purpose reference = the application id, so payments
flags a second payment of one application (``PaymentOrder.duplicate_of``).

The paid handler (:func:`fee_paid`, told once per credited order, in the ledger's transaction)
moves the application on exactly once, by a compare-and-set on its status; any other payment
(the second of one application, or one arriving after the application ended) is refunded in the
same transaction. A rejected or withdrawn application that was paid is refunded once (the refund
number is the fee payment's). Unpaid past ``fee_payment_ttl_s`` the application is cancelled by
the ``gov_services.expire_fees`` schedule and its client key is freed. Services only ``flush()``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from app_api.core.money import fen_to_yuan
from app_api.platform.accounts.principal import Principal
from columns.gov_services import workdays
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.config import get_config
from columns.gov_services.errors import FeeNotComputed, FeePaymentClosed
from columns.gov_services.fees import FeeNotComputable, amount_fen
from columns.gov_services.lifecycle import (
    bundle_changed,
    claim,
    close_pause,
    pauses_of,
    record_event,
    started_at,
    tell,
)
from columns.gov_services.models import (
    ACCEPTED,
    AWAITING_PAYMENT,
    CANCELLED,
    SUBMITTED,
    Application,
    FeePayment,
)
from payments.api import PaidPurpose, on_paid

PURPOSE = "gov_services.fee"
SOURCE = "column:gov_services"
# Refund reasons (shown to the resident at the provider and to finance).
REFUND_DUPLICATE = "同一申请已缴费，重复缴纳的费用原路退回"
REFUND_ENDED = "申请已结束，费用原路退回"
REFUND_REJECTED = "申请不予办理，已缴费用原路退回"
REFUND_WITHDRAWN = "申请已撤回，已缴费用原路退回"
REFUND_REVOKED = "秒批结果已撤销，已缴费用原路退回"
# Below this many seconds left, no new order is opened (the wallet needs time to pay).
MIN_ORDER_S = 60


@dataclass(frozen=True, slots=True)
class Quote:
    amount_fen: int
    charge_at: str | None


def quote(item: CatalogueItem, form: dict[str, object]) -> Quote:
    """The fee of an application of ``item`` with this form; free items quote nothing."""
    if item.fee is None:
        return Quote(0, None)
    try:
        amount = amount_fen(item.fee, form)
    except FeeNotComputable as exc:
        raise FeeNotComputed(str(exc), field=getattr(item.fee, "field", None)) from None
    return Quote(amount, item.fee.charge_at if amount > 0 else None)


def release_client_key(app: Application) -> str:
    """Free the resident's client key for a new application (the key is unique per applicant)."""
    old = app.client_key
    app.client_key = f"released:{app.id}"
    return old


async def await_payment(
    session: AsyncSession, app: Application, *, stage: str, actor: Principal | None, role: str
) -> None:
    """The application (already moved to ``awaiting_payment``) waits for its fee."""
    now = utcnow()
    app.fee_due_at = now + dt.timedelta(seconds=get_config().fee_payment_ttl_s)
    app.updated_at = now
    session.add(app)
    await session.flush()
    title = "待缴费" if stage == "submit" else "已受理，待缴费"
    await record_event(
        session,
        app,
        kind="awaiting_payment",
        title=title,
        note=f"应缴{fen_to_yuan(app.fee_fen)}元，请在规定时间内缴纳",
        actor=actor,
        role=role,
        data={"fee_fen": app.fee_fen, "stage": stage, "fee_due_at": app.fee_due_at.isoformat()},
    )
    await tell(session, app, "待缴费", f"应缴{fen_to_yuan(app.fee_fen)}元，逾期未缴申请将自动取消。")


async def start(
    session: AsyncSession,
    *,
    app: Application,
    provider: str,
    channel: str,
    payer_id: str | None,
    client_ip: str,
) -> tuple[FeePayment, dict[str, str]]:
    """Open a payment order for the application's fee and place it at the provider."""
    from payments import api as payments

    now = utcnow()
    if app.status != AWAITING_PAYMENT or app.fee_due_at is None:
        raise FeePaymentClosed("该申请当前无需缴费", status=app.status)
    left = int((app.fee_due_at - now).total_seconds())
    if left < MIN_ORDER_S:
        raise FeePaymentClosed("缴费时间即将截止，请重新提交申请", status=app.status)
    order = await payments.create_order(
        session,
        account_id=app.applicant_id,
        purpose=PURPOSE,
        purpose_ref=app.id,
        amount_fen=app.fee_fen,
        description=f"{app.department} {app.item_name}",
        provider=provider,
        channel=channel,
        ttl_s=left,
    )
    fee = FeePayment(
        application_id=app.id,
        account_id=app.applicant_id,
        department=app.department,
        item_code=app.item_code,
        item_name=app.item_name,
        application_number=app.number,
        order_id=order.id,
        out_trade_no=order.out_trade_no,
        provider=provider,
        amount_fen=app.fee_fen,
    )
    session.add(fee)
    await session.flush()
    started = await payments.start_payment(session, order=order, payer_id=payer_id, client_ip=client_ip)
    return fee, started.client_params


async def _refund(session: AsyncSession, fee: FeePayment, reason: str) -> None:
    """Return a paid fee in full, once (the refund number is the fee payment's)."""
    from payments import api as payments

    if fee.refund_no is not None:
        return
    fee.refund_no = f"GF{fee.id}"
    fee.refund_reason, fee.refunded_at, fee.status = reason, utcnow(), "refunded"
    session.add(fee)
    await payments.request_refund(
        session,
        order_id=fee.order_id,
        amount_fen=fee.amount_fen,
        out_refund_no=fee.refund_no,
        reason=reason,
        source=SOURCE,
        actor_id=None,
    )


@on_paid(PURPOSE)
async def fee_paid(session: AsyncSession, paid: PaidPurpose) -> None:
    """Payments credited a fee order (called once per order): move the application on, or refund."""
    from payments import api as payments

    fee = (
        await session.exec(select(FeePayment).where(FeePayment.order_id == paid.order_id).with_for_update())
    ).first()
    if fee is None:
        raise LookupError(f"gov_services fee payment for order {paid.order_id} not found")
    if fee.status != "open":
        return
    fee.paid_at = paid.paid_at
    app = await session.get(Application, fee.application_id, with_for_update=True, populate_existing=True)
    assert app is not None
    order = await session.get(payments.PaymentOrder, paid.order_id)
    duplicate = (order is not None and order.duplicate_of is not None) or (
        app.fee_order_id is not None and app.fee_order_id != paid.order_id
    )
    if duplicate:
        await _refund(session, fee, REFUND_DUPLICATE)
        await record_event(
            session,
            app,
            kind="fee_refunded",
            title="重复缴费已退回",
            note=f"{fen_to_yuan(fee.amount_fen)}元将原路退回",
            actor=None,
            role="system",
            data={"order_id": paid.order_id, "reason": "duplicate"},
        )
        return
    stage = app.fee_charge_at or "submit"
    target = ACCEPTED if stage == "accept" else SUBMITTED
    if app.status != AWAITING_PAYMENT or not await claim(session, app, [AWAITING_PAYMENT], target):
        # Paid after the application ended (cancelled for want of payment, withdrawn).
        await _refund(session, fee, REFUND_ENDED)
        await record_event(
            session,
            app,
            kind="fee_refunded",
            title="申请已结束，所缴费用已退回",
            note=f"{fen_to_yuan(fee.amount_fen)}元将原路退回",
            actor=None,
            role="system",
            data={"order_id": paid.order_id, "reason": "ended"},
        )
        return
    fee.status = "paid"
    session.add(fee)
    app.fee_order_id, app.fee_due_at = paid.order_id, None
    note = f"已缴纳{fen_to_yuan(fee.amount_fen)}元"
    if target == SUBMITTED:
        from columns.gov_services import applications

        await record_event(
            session,
            app,
            kind="fee_paid",
            title="缴费成功",
            note=note,
            actor=None,
            role="system",
            data={"order_id": paid.order_id, "fee_fen": fee.amount_fen, "provider": paid.provider},
        )
        await applications.proceed_submitted(session, app=app, actor=None, role="system")
        return
    now = utcnow()
    close_pause(app, now)
    app.due_at = workdays.due_at(started_at(app), app.limit_days, pauses=pauses_of(app))
    app.updated_at = now
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="fee_paid",
        title="缴费成功，继续办理",
        note=note,
        actor=None,
        role="system",
        data={"order_id": paid.order_id, "fee_fen": fee.amount_fen, "provider": paid.provider},
    )
    await tell(session, app, "已受理", note + "，部门继续办理。")


async def refund_paid(session: AsyncSession, app: Application, *, reason: str) -> bool:
    """The application ended without a result (rejected, withdrawn): refund its paid fee, once.
    Read from the fee payments, not the application row, which a concurrent paid handler may have
    changed after the caller loaded it."""
    fee = (
        await session.exec(
            select(FeePayment)
            .where(FeePayment.application_id == app.id, FeePayment.status == "paid")
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).first()
    if fee is None or fee.refund_no is not None:
        return False
    await _refund(session, fee, reason)
    await record_event(
        session,
        app,
        kind="fee_refunded",
        title="已缴费用原路退回",
        note=f"{fen_to_yuan(fee.amount_fen)}元：{reason}",
        actor=None,
        role="system",
        data={"order_id": fee.order_id, "fee_fen": fee.amount_fen},
    )
    return True


async def cancel_unpaid(session: AsyncSession, app: Application, *, now: dt.datetime) -> bool:
    """Cancel an application whose fee was not paid in time and free its client key."""
    if not await claim(session, app, [AWAITING_PAYMENT], CANCELLED):
        return False
    if app.pauses and app.pauses[-1][1] is None:
        close_pause(app, now)
    key = release_client_key(app)
    app.fee_due_at, app.updated_at = None, now
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="cancelled",
        title="逾期未缴费，申请已取消",
        actor=None,
        role="system",
        data={"fee_fen": app.fee_fen, "client_key": key},
    )
    await tell(session, app, "已取消", "未在规定时间内缴费，如仍需办理请重新提交申请。")
    await bundle_changed(session, app)
    return True


async def expire_due(*, batch: int = 200) -> int:
    """The schedule's sweep: applications past their payment time limit are cancelled, each in its
    own transaction (a payment that lands meanwhile wins the compare-and-set, or is refunded)."""
    now = utcnow()
    async with session_scope() as s:
        ids = list(
            (
                await s.exec(
                    select(Application.id)
                    .where(Application.status == AWAITING_PAYMENT, col(Application.fee_due_at) <= now)
                    .order_by(col(Application.fee_due_at))
                    .limit(batch)
                )
            ).all()
        )
    done = 0
    for app_id in ids:
        async with session_scope() as s:
            app = await s.get(Application, app_id, with_for_update=True)
            if app is not None and app.fee_due_at is not None and app.fee_due_at <= now:
                done += await cancel_unpaid(s, app, now=now)
    return done


async def fee_payments_of(session: AsyncSession, app: Application) -> list[FeePayment]:
    return list(
        (
            await session.exec(
                select(FeePayment)
                .where(FeePayment.application_id == app.id)
                .order_by(col(FeePayment.created_at), col(FeePayment.id))
            )
        ).all()
    )


async def finance_totals(
    session: AsyncSession, *, department: str | None, since: dt.datetime, until: dt.datetime
) -> list[tuple[str, str, int, int]]:
    """Per department and status over a period: (department, status, count, amount in fen)."""
    q = (
        select(
            FeePayment.department,
            FeePayment.status,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(FeePayment.amount_fen), 0),
        )
        .where(col(FeePayment.created_at) >= since, col(FeePayment.created_at) < until)
        .group_by(col(FeePayment.department), col(FeePayment.status))
    )
    if department:
        q = q.where(FeePayment.department == department)
    return [(d, s, int(n), int(f)) for d, s, n, f in (await session.exec(q)).all()]


async def finance_listing(
    session: AsyncSession,
    *,
    department: str | None,
    since: dt.datetime,
    until: dt.datetime,
    status: str | None,
    limit: int,
) -> list[FeePayment]:
    """Fee payments ordered in a period, newest first, with the department they are collected for."""
    q = select(FeePayment).where(col(FeePayment.created_at) >= since, col(FeePayment.created_at) < until)
    if department:
        q = q.where(FeePayment.department == department)
    if status:
        q = q.where(FeePayment.status == status)
    return list(
        (
            await session.exec(q.order_by(col(FeePayment.created_at).desc(), col(FeePayment.id)).limit(limit))
        ).all()
    )
