"""Utilities: bind household accounts, list what is outstanding, pay through payments, and tell
each biller of each paid bill exactly once.

Money moves only through ``payments``: a bill becomes paid in the paid handler of the purpose
``utilities.bill``, which payments runs once per credited order. That handler (same transaction)
writes one :class:`BillerNotice` per bill and enqueues its delivery through the outbox; delivery
retries with backoff and ends in a dead-letter list an administrator can see and requeue. The
biller records a payment once per notice id (its idempotency key), so a delivery repeated after a
timeout is harmless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str
from app_api.core.db import savepoint, session_scope, utcnow
from app_api.core.errors import AppError
from app_api.core.jobs import outbox
from app_api.core.redis import get_redis
from app_api.platform import audit, notify
from columns.utilities.adapters import PaymentPost, RemoteBill, get_adapter
from columns.utilities.config import KIND_NAMES, get_config
from columns.utilities.errors import (
    AccountNotFound,
    AccountNumberInvalid,
    AlreadyBound,
    BillAlreadyPaid,
    BillChanged,
    BillerUnavailable,
    BillNotFound,
    BindAttemptsExceeded,
    BindingNotFound,
    HolderNameMismatch,
    NoticeNotDead,
    NoticeNotFound,
    PaymentNotFound,
    TooManyBindings,
    UnknownBiller,
)
from columns.utilities.models import (
    Bill,
    BillerNotice,
    BillStatus,
    Binding,
    ItemOutcome,
    NoticeStatus,
    Payment,
    PaymentItem,
    PaymentStatus,
)
from payments.api import PaidPurpose, on_paid

log = logging.getLogger(__name__)
PURPOSE = "utilities.bill"

notify.register_template(
    "utilities.due_reminder",
    "您绑定的$biller户号$account_no有$count笔账单共$amount元，将于$due_date到期，可在“水电气缴费”中缴纳。",
)
notify.register_template(
    "utilities.paid",
    "您已成功缴纳$biller账单$amount元（户号$account_no），缴费单位销账后可在缴费记录中查看电子收据。",
)


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def kind_name(kind: str) -> str:
    return KIND_NAMES.get(kind, kind)


# -- bindings -----------------------------------------------------------------------------------


async def active_bindings(session: AsyncSession, *, account_id: str) -> list[Binding]:
    rows = await session.exec(
        select(Binding)
        .where(Binding.account_id == account_id, col(Binding.unbound_at).is_(None))
        .order_by(col(Binding.created_at))
    )
    return list(rows.all())


async def owned_binding(session: AsyncSession, *, account_id: str, binding_id: str) -> Binding:
    b = await session.get(Binding, binding_id)
    if b is None or b.account_id != account_id or b.unbound_at is not None:
        raise BindingNotFound()
    return b


def _failures_key(account_id: str) -> str:
    return f"utilities:bind_failures:{account_id}:{utcnow():%Y%m%d}"


async def bind(
    session: AsyncSession,
    *,
    account_id: str,
    biller_code: str,
    account_no: str,
    holder_name: str,
    label: str = "",
) -> Binding:
    """Bind a household account once the biller confirms the holder's name."""
    import re

    cfg = get_config()
    biller = cfg.biller(biller_code)
    if biller is None:
        raise UnknownBiller(biller=biller_code)
    account_no = account_no.strip()
    if not re.fullmatch(biller.account_no_pattern, account_no):
        raise AccountNumberInvalid(biller=biller_code)
    current = await active_bindings(session, account_id=account_id)
    if any(b.biller_code == biller_code and b.account_no == account_no for b in current):
        raise AlreadyBound(biller=biller_code)
    if len(current) >= cfg.max_bound_accounts:
        raise TooManyBindings(limit=cfg.max_bound_accounts)
    redis = await get_redis()
    key = _failures_key(account_id)
    if int(await redis.get(key) or 0) >= cfg.bind_failures_per_day:
        raise BindAttemptsExceeded()
    try:
        info = await get_adapter(biller_code).verify_account(
            account_no=account_no, holder_name=holder_name.strip()
        )
    except (AccountNotFound, HolderNameMismatch):
        await redis.incr(key)
        await redis.expire(key, 86400)
        raise
    b = Binding(
        account_id=account_id,
        biller_code=biller_code,
        kind=biller.kind,
        account_no=info.account_no,
        holder_name_enc=encrypt_str(holder_name.strip(), aad="utilities.holder"),
        holder_masked=info.holder_masked,
        address_masked=info.address_masked,
        label=label,
    )
    try:
        async with savepoint(session):
            session.add(b)
            await session.flush()
    except sa.exc.IntegrityError as exc:
        raise AlreadyBound(biller=biller_code) from exc
    await audit.record(
        session,
        action="utilities.account_bound",
        actor_id=account_id,
        subject_type="utilities_binding",
        subject_id=b.id,
        data={"biller": biller_code, "account_no": account_no},
    )
    return b


async def unbind(session: AsyncSession, *, binding: Binding) -> None:
    binding.unbound_at = utcnow()
    session.add(binding)
    await session.flush()
    await audit.record(
        session,
        action="utilities.account_unbound",
        actor_id=binding.account_id,
        subject_type="utilities_binding",
        subject_id=binding.id,
        data={"biller": binding.biller_code},
    )


# -- bills --------------------------------------------------------------------------------------


@dataclass
class BindingBills:
    binding: Binding
    bills: list[Bill]
    error: AppError | None  # the biller could not be asked: ``bills`` are what we saw last


async def _fetch(binding: Binding) -> list[RemoteBill] | AppError:
    try:
        return await get_adapter(binding.biller_code).outstanding_bills(account_no=binding.account_no)
    except AppError as exc:
        return exc


async def _upsert(session: AsyncSession, pairs: list[tuple[str, str, RemoteBill]]) -> None:
    if not pairs:
        return
    table = Bill.__table__  # type: ignore[attr-defined]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    now = utcnow()
    from app_api.core.db import new_id

    rows = [
        dict(
            id=new_id(),
            biller_code=code,
            account_no=acct,
            bill_no=r.bill_no,
            period=r.period,
            amount_fen=r.amount_fen,
            due_date=r.due_date,
            usage=r.usage[:40],
            status=BillStatus.OUTSTANDING.value,
            first_seen_at=now,
            last_seen_at=now,
        )
        for code, acct, r in pairs
    ]
    # Two listings at once may both see a new bill: the constraint keeps one row.
    await session.exec(
        insert(table)
        .values(rows)
        .on_conflict_do_nothing(  # type: ignore[call-overload]
            index_elements=["biller_code", "bill_no"]
        )
    )


async def _local_bills(session: AsyncSession, pairs: set[tuple[str, str]]) -> list[Bill]:
    if not pairs:
        return []
    rows = await session.exec(
        select(Bill)
        .where(sa.tuple_(col(Bill.biller_code), col(Bill.account_no)).in_(list(pairs)))
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def refresh(session: AsyncSession, bindings: Sequence[Binding]) -> list[BindingBills]:
    """Ask every biller at once; store what changed; fall back to the last view on failure.

    A listing that finds nothing new writes nothing (no write lock on SQLite, no dead tuples on
    PostgreSQL): only new bills, changed amounts and bills settled elsewhere are written.
    """
    answers = await asyncio.gather(*(_fetch(b) for b in bindings))
    pairs = {(b.biller_code, b.account_no) for b in bindings}
    local = await _local_bills(session, pairs)
    known = {(x.biller_code, x.bill_no) for x in local}
    new = [
        (b.biller_code, b.account_no, r)
        for b, ans in zip(bindings, answers, strict=True)
        if not isinstance(ans, AppError)
        for r in ans
        if (b.biller_code, r.bill_no) not in known
    ]
    if new:
        await _upsert(session, new)
        local = await _local_bills(session, pairs)
    out = []
    for binding, ans in zip(bindings, answers, strict=True):
        mine = [
            x for x in local if x.biller_code == binding.biller_code and x.account_no == binding.account_no
        ]
        if isinstance(ans, AppError):
            shown = [x for x in mine if x.status == BillStatus.OUTSTANDING]
            out.append(BindingBills(binding, sorted(shown, key=lambda x: x.due_date), ans))
            continue
        remote = {r.bill_no: r for r in ans}
        shown = []
        for bill in mine:
            r = remote.get(bill.bill_no)
            if r is not None and bill.status == BillStatus.OUTSTANDING:
                if bill.amount_fen != r.amount_fen or bill.due_date != r.due_date:
                    bill.amount_fen, bill.due_date = r.amount_fen, r.due_date  # e.g. a late fee added
                    bill.last_seen_at = utcnow()
                    session.add(bill)
                shown.append(bill)
            elif r is None and bill.status == BillStatus.OUTSTANDING:
                # Paid at a counter or another app: no longer ours to collect.
                bill.status = BillStatus.SETTLED_ELSEWHERE.value
                bill.last_seen_at = utcnow()
                session.add(bill)
        out.append(BindingBills(binding, sorted(shown, key=lambda x: x.due_date), None))
    await session.flush()
    return out


async def outstanding(session: AsyncSession, *, account_id: str) -> list[BindingBills]:
    return await refresh(session, await active_bindings(session, account_id=account_id))


# -- paying -------------------------------------------------------------------------------------


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
                "amount": yuan(applied_fen),
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


async def payment_lines(session: AsyncSession, *, payment: Payment) -> list[ReceiptLine]:
    rows = (
        await session.exec(
            select(PaymentItem, Bill, Binding, BillerNotice)
            .join(Bill, col(Bill.id) == col(PaymentItem.bill_id))
            .join(Binding, col(Binding.id) == col(PaymentItem.binding_id))
            .join(BillerNotice, col(BillerNotice.item_id) == col(PaymentItem.id), isouter=True)
            .where(PaymentItem.payment_id == payment.id)
            .execution_options(populate_existing=True)
        )
    ).all()
    return [ReceiptLine(i, b, g, n) for i, b, g, n in rows]


async def history(
    session: AsyncSession, *, account_id: str, offset: int, limit: int
) -> tuple[list[Payment], int]:
    q = select(Payment).where(Payment.account_id == account_id, Payment.status == PaymentStatus.PAID.value)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    rows = (await session.exec(q.order_by(col(Payment.paid_at).desc()).offset(offset).limit(limit))).all()
    return list(rows), int(total)


# -- telling the biller -------------------------------------------------------------------------


def backoff_s(attempts: int) -> int:
    cfg = get_config()
    return int(min(cfg.notice_backoff_max_s, cfg.notice_backoff_base_s * 2 ** max(0, attempts - 1)))


async def _locked_notice(session: AsyncSession, notice_id: str) -> BillerNotice | None:
    stmt = select(BillerNotice).where(BillerNotice.id == notice_id).with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def deliver_notice(notice_id: str, *, now: dt.datetime | None = None) -> str:
    """One delivery attempt of one notice (its own transactions; no lock held during the call).

    Returns delivered | retry | dead | not_due | leased | done.
    """
    now = now or utcnow()
    cfg = get_config()
    async with session_scope() as session:
        # The claim is one conditional UPDATE, atomic on SQLite and PostgreSQL alike: of two
        # workers holding the same job, one gets the lease and the other does nothing.
        claimed = await session.exec(  # type: ignore[call-overload]
            sa.update(BillerNotice)
            .where(
                col(BillerNotice.id) == notice_id,
                col(BillerNotice.status) == NoticeStatus.PENDING.value,
                col(BillerNotice.next_attempt_at) <= now,
                sa.or_(col(BillerNotice.lease_until).is_(None), col(BillerNotice.lease_until) <= now),
            )
            .values(lease_until=now + dt.timedelta(seconds=cfg.notice_lease_s))
        )
        if claimed.rowcount != 1:
            n = await session.get(BillerNotice, notice_id)
            if n is None or n.status != NoticeStatus.PENDING:
                return "done"
            return "not_due" if n.next_attempt_at > now else "leased"
        n = await _locked_notice(session, notice_id)
        assert n is not None
        post = PaymentPost(
            account_no=n.account_no,
            bill_no=n.bill_no,
            amount_fen=n.amount_fen,
            payment_ref=n.id,
            paid_at=n.paid_at,
            channel=n.channel,
        )
        code = n.biller_code
    receipt: str | None = None
    error: str | None = None
    retryable = True
    try:
        ack = await get_adapter(code).post_payment(post)
        receipt = ack.receipt_no
    except (BillerUnavailable, UnknownBiller) as exc:
        error = f"{exc.code}: {exc.extra.get('reason', exc.detail)}"
    except AppError as exc:
        error, retryable = f"{exc.code}: {exc.detail}", False
    async with session_scope() as session:
        n = await _locked_notice(session, notice_id)
        assert n is not None
        n.lease_until = None
        if n.status != NoticeStatus.PENDING:
            session.add(n)
            return "done"
        n.attempts += 1
        if receipt is not None:
            n.status, n.receipt_no, n.delivered_at, n.last_error = (
                NoticeStatus.DELIVERED.value,
                receipt,
                utcnow(),
                None,
            )
            session.add(n)
            await audit.record(
                session,
                action="utilities.biller_notified",
                subject_type="utilities_biller_notice",
                subject_id=n.id,
                data={"biller": n.biller_code, "attempts": n.attempts, "receipt_no": receipt},
            )
            return "delivered"
        n.last_error = (error or "")[:300]
        if not retryable or n.attempts >= cfg.notice_max_attempts:
            n.status, n.dead_at = NoticeStatus.DEAD.value, utcnow()
            session.add(n)
            log.error(
                "utilities: notice %s to %s is dead after %d attempts: %s",
                n.id,
                n.biller_code,
                n.attempts,
                n.last_error,
            )
            await audit.record(
                session,
                action="utilities.biller_notice_dead",
                subject_type="utilities_biller_notice",
                subject_id=n.id,
                data={"biller": n.biller_code, "attempts": n.attempts, "error": n.last_error},
            )
            return "dead"
        n.next_attempt_at = now + dt.timedelta(seconds=backoff_s(n.attempts))
        session.add(n)
        return "retry"


async def due_notice_ids(session: AsyncSession, *, now: dt.datetime, limit: int = 200) -> list[str]:
    rows = await session.exec(
        select(BillerNotice.id)
        .where(
            BillerNotice.status == NoticeStatus.PENDING.value,
            col(BillerNotice.next_attempt_at) <= now,
            sa.or_(col(BillerNotice.lease_until).is_(None), col(BillerNotice.lease_until) <= now),
        )
        .order_by(col(BillerNotice.next_attempt_at))
        .limit(limit)
    )
    return list(rows.all())


async def retry_due(*, now: dt.datetime | None = None) -> dict[str, int]:
    now = now or utcnow()
    async with session_scope() as session:
        ids = await due_notice_ids(session, now=now)
    counts: dict[str, int] = {}
    for notice_id in ids:
        outcome = await deliver_notice(notice_id, now=now)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


async def list_notices(
    session: AsyncSession, *, status: str | None, offset: int, limit: int
) -> tuple[list[BillerNotice], int]:
    q = select(BillerNotice)
    if status:
        q = q.where(BillerNotice.status == status)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(q.order_by(col(BillerNotice.created_at).desc()).offset(offset).limit(limit))
    ).all()
    return list(rows), int(total)


async def requeue(session: AsyncSession, *, notice_id: str, actor_id: str) -> BillerNotice:
    """An administrator sends a dead notice again (after the biller fixed its side)."""
    n = await _locked_notice(session, notice_id)
    if n is None:
        raise NoticeNotFound()
    if n.status != NoticeStatus.DEAD:
        raise NoticeNotDead(status=n.status)
    n.status, n.attempts, n.dead_at, n.next_attempt_at = NoticeStatus.PENDING.value, 0, None, utcnow()
    session.add(n)
    await session.flush()
    await audit.record(
        session,
        action="utilities.biller_notice_requeued",
        actor_id=actor_id,
        subject_type="utilities_biller_notice",
        subject_id=n.id,
        data={"biller": n.biller_code},
    )
    await outbox.enqueue(session, "utilities.notify_biller", notice_id=n.id)
    return n


# -- reminders ----------------------------------------------------------------------------------


async def send_due_reminders(*, today: dt.date | None = None) -> int:
    """Refresh every bound account's bills and text residents whose bills fall due soon (once per bill)."""
    today = today or dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    horizon = today + dt.timedelta(days=get_config().reminder_days_before)
    async with session_scope() as session:
        owners = list(
            (
                await session.exec(
                    select(Binding.account_id).where(col(Binding.unbound_at).is_(None)).distinct()
                )
            ).all()
        )
    sent = 0
    for owner in owners:
        async with session_scope() as session:
            for view in await outstanding(session, account_id=owner):
                due = [b for b in view.bills if b.due_date <= horizon and b.reminded_at is None]
                if not due:
                    continue
                for b in due:
                    b.reminded_at = utcnow()
                    session.add(b)
                await notify.send(
                    session,
                    account_id=owner,
                    template="utilities.due_reminder",
                    params={
                        "biller": kind_name(view.binding.kind),
                        "account_no": view.binding.account_no,
                        "count": len(due),
                        "amount": yuan(sum(b.amount_fen for b in due)),
                        "due_date": min(b.due_date for b in due).strftime("%m月%d日"),
                    },
                )
                sent += 1
    return sent
