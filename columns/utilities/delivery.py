"""Telling each biller of each paid bill exactly once.

One :class:`BillerNotice` per paid bill, delivered by the outbox job right after the payment and by a
sweep after that, with backoff; a notice that runs out of attempts (or that the biller refuses) is
dead and waits on the administrators' list to be sent again. The biller records a payment once per
notice id (its idempotency key), so a delivery repeated after a timeout is harmless.
"""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.db import session_scope, utcnow
from app_api.core.errors import AppError
from app_api.core.jobs import outbox
from app_api.platform import audit
from columns.utilities.adapters import PaymentPost, get_adapter
from columns.utilities.config import get_config
from columns.utilities.errors import BillerUnavailable, NoticeNotDead, NoticeNotFound, UnknownBiller
from columns.utilities.models import BillerNotice, NoticeStatus

log = logging.getLogger(__name__)


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
        claimed = await session.exec(
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
    session: AsyncSession, *, status: str | None, cursor: str | None, offset: int, limit: int
) -> tuple[list[BillerNotice], int, str | None]:
    """Notices newest first, after ``cursor`` (or, deprecated, ``offset`` rows in), the total and the
    next page's cursor."""
    q = select(BillerNotice)
    if status:
        q = q.where(BillerNotice.status == status)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    stmt = paging.after(
        q, at_column=col(BillerNotice.created_at), id_column=col(BillerNotice.id), cursor=cursor, limit=limit
    )
    rows = (await session.exec(stmt.offset(0 if cursor else offset))).all()
    items, next_cursor = paging.page(rows, limit=limit, key=lambda n: (n.created_at, n.id))
    return items, int(total), next_cursor


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
