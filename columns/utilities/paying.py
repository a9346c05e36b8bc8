"""Paying bills: one payment order for several bills, checked with their billers first; the paid
handler of the purpose ``utilities.bill`` settles them and queues one notice per bill for its biller
(same transaction); receipts and the payment history.

Money moves only through ``payments``: the handler runs once per credited order. A bill paid by two
orders (two phones, an abandoned order finished later) is applied once and the second payment's
share is refunded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.jobs import outbox
from app_api.core.money import fen_to_yuan
from app_api.platform import audit, notify
from columns.utilities.bills import refresh
from columns.utilities.bindings import active_bindings
from columns.utilities.config import get_config, kind_name
from columns.utilities.errors import BillAlreadyPaid, BillChanged, BillNotFound, PaymentNotFound
from columns.utilities.models import (
    Bill,
    BillerNotice,
    BillStatus,
    Binding,
    ItemOutcome,
    Payment,
    PaymentItem,
    PaymentStatus,
)
from payments.api import PaidPurpose, on_paid

PURPOSE = "utilities.bill"

notify.register_template(
    "utilities.paid",
    "您已成功缴纳$biller账单$amount元（户号$account_no），缴费单位销账后可在缴费记录中查看电子收据。",
)


async def create_payment(
    session: AsyncSession,
    *,
    account_id: str,
    bill_ids: list[str],
    provider: str,
    channel: str,
    payer_id: str | None,
    client_ip: str,
) -> tuple[Payment, dict[str, str]]:
    """Check the bills with their billers, open one payment order for all of them, place it."""
    from payments import api as payments

    ids = list(dict.fromkeys(bill_ids))
    bindings = {
        (b.biller_code, b.account_no): b for b in await active_bindings(session, account_id=account_id)
    }
    bills = list((await session.exec(select(Bill).where(col(Bill.id).in_(ids)))).all())
    if len(bills) != len(ids) or any((b.biller_code, b.account_no) not in bindings for b in bills):
        raise BillNotFound()
    for bill in bills:
        if bill.status == BillStatus.PAID:
            raise BillAlreadyPaid(bill_id=bill.id)
        if bill.status != BillStatus.OUTSTANDING:
            raise BillChanged(bill_id=bill.id)
    # The biller's word now, not the last listing: a bill paid at the counter since, or re-rated.
    involved = list(
        {(b.biller_code, b.account_no): bindings[(b.biller_code, b.account_no)] for b in bills}.values()
    )
    views = await refresh(session, involved)
    for view in views:
        if view.error is not None:
            raise view.error
    still = {x.id: x for v in views for x in v.bills}
    for bill in bills:
        current = still.get(bill.id)
        if current is None:
            raise BillChanged(bill_id=bill.id)
    amount = sum(still[b.id].amount_fen for b in bills)
    payment = Payment(account_id=account_id, provider=provider, amount_fen=amount)
    session.add(payment)
    await session.flush()
    for bill in bills:
        session.add(
            PaymentItem(
                payment_id=payment.id,
                bill_id=bill.id,
                amount_fen=still[bill.id].amount_fen,
                binding_id=bindings[(bill.biller_code, bill.account_no)].id,
            )
        )
    first = bindings[(bills[0].biller_code, bills[0].account_no)]
    description = f"{kind_name(first.kind)} {first.account_no}" + (
        f" 等{len(bills)}笔" if len(bills) > 1 else ""
    )
    order = await payments.create_order(
        session,
        account_id=account_id,
        purpose=PURPOSE,
        purpose_ref=payment.id,
        amount_fen=amount,
        description=description,
        provider=provider,
        channel=channel,
        ttl_s=get_config().payment_ttl_s,
    )
    payment.order_id, payment.out_trade_no = order.id, order.out_trade_no
    session.add(payment)
    await session.flush()
    await audit.record(
        session,
        action="utilities.payment_created",
        actor_id=account_id,
        subject_type="utilities_payment",
        subject_id=payment.id,
        data={"bills": len(bills), "amount_fen": amount, "provider": provider},
    )
    started = await payments.start_payment(session, order=order, payer_id=payer_id, client_ip=client_ip)
    return payment, started.client_params


@on_paid(PURPOSE)
async def bills_paid(session: AsyncSession, paid: PaidPurpose) -> None:
    """Payments credited the order (called once per order): settle the bills, queue biller notices."""
    from payments import api as payments

    payment = (
        await session.exec(select(Payment).where(Payment.id == paid.purpose_ref).with_for_update())
    ).first()
    if payment is None:
        raise LookupError(f"utilities payment {paid.purpose_ref} not found")
    payment.status = PaymentStatus.PAID.value
    payment.paid_at = paid.paid_at
    session.add(payment)
    items = list((await session.exec(select(PaymentItem).where(PaymentItem.payment_id == payment.id))).all())
    first_binding: Binding | None = None
    applied_fen = 0
    for item in items:
        bill = (
            await session.exec(
                select(Bill)
                .where(Bill.id == item.bill_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).one()
        binding = await session.get(Binding, item.binding_id)
        assert binding is not None
        if bill.status == BillStatus.PAID and bill.paid_payment_id != payment.id:
            # Two orders for one bill both paid (two phones, an abandoned order finished later):
            # the money of the second goes back; the biller hears of the bill once.
            item.outcome = ItemOutcome.REFUNDED.value
            session.add(item)
            await payments.request_refund(
                session,
                order_id=paid.order_id,
                amount_fen=item.amount_fen,
                out_refund_no=f"UT{item.id}",
                reason="账单已由其他订单缴清",
                source="column:utilities",
                actor_id=None,
            )
            continue
        bill.status = BillStatus.PAID.value
        bill.paid_payment_id, bill.paid_at = payment.id, paid.paid_at
        session.add(bill)
        item.outcome = ItemOutcome.APPLIED.value
        session.add(item)
        notice = BillerNotice(
            item_id=item.id,
            biller_code=bill.biller_code,
            account_no=bill.account_no,
            bill_no=bill.bill_no,
            amount_fen=item.amount_fen,
            paid_at=paid.paid_at,
            channel=paid.provider,
        )
        session.add(notice)
        await session.flush()
        await outbox.enqueue(session, "utilities.notify_biller", notice_id=notice.id)
        applied_fen += item.amount_fen
        first_binding = first_binding or binding
    await audit.record(
        session,
        action="utilities.payment_paid",
        actor_id=payment.account_id,
        subject_type="utilities_payment",
        subject_id=payment.id,
        data={"order_id": paid.order_id, "amount_fen": paid.amount_fen, "applied_fen": applied_fen},
    )
    if first_binding is not None:
        await notify.send(
            session,
            account_id=payment.account_id,
            template="utilities.paid",
            params={
                "biller": kind_name(first_binding.kind),
                "amount": fen_to_yuan(applied_fen),
                "account_no": first_binding.account_no,
            },
        )


async def owned_payment(session: AsyncSession, *, account_id: str, payment_id: str) -> Payment:
    p = await session.get(Payment, payment_id)
    if p is None or p.account_id != account_id:
        raise PaymentNotFound()
    return p


@dataclass
class ReceiptLine:
    item: PaymentItem
    bill: Bill
    binding: Binding
    notice: BillerNotice | None


async def payment_lines(session: AsyncSession, *, payments: list[Payment]) -> dict[str, list[ReceiptLine]]:
    """The receipt lines of each payment (by payment id; every payment has a key), in one query."""
    out: dict[str, list[ReceiptLine]] = {p.id: [] for p in payments}
    if not out:
        return out
    rows = (
        await session.exec(
            select(PaymentItem, Bill, Binding, BillerNotice)
            .join(Bill, col(Bill.id) == col(PaymentItem.bill_id))
            .join(Binding, col(Binding.id) == col(PaymentItem.binding_id))
            .join(BillerNotice, col(BillerNotice.item_id) == col(PaymentItem.id), isouter=True)
            .where(col(PaymentItem.payment_id).in_(list(out)))
            .execution_options(populate_existing=True)
        )
    ).all()
    for i, b, g, n in rows:
        out[i.payment_id].append(ReceiptLine(i, b, g, n))
    return out


async def history(
    session: AsyncSession, *, account_id: str, cursor: str | None, offset: int, limit: int
) -> tuple[list[Payment], int, str | None]:
    """Paid payments newest paid first, after ``cursor`` (or, deprecated, ``offset`` rows in), the total
    and the next page's cursor."""
    q = select(Payment).where(Payment.account_id == account_id, Payment.status == PaymentStatus.PAID.value)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    stmt = paging.after(
        q, at_column=col(Payment.paid_at), id_column=col(Payment.id), cursor=cursor, limit=limit
    )
    rows = (await session.exec(stmt.offset(0 if cursor else offset))).all()
    items, next_cursor = paging.page(rows, limit=limit, key=_paid_key)
    return items, int(total), next_cursor


def _paid_key(p: Payment) -> tuple[dt.datetime, str]:
    assert p.paid_at is not None  # the list holds paid payments only
    return p.paid_at, p.id
