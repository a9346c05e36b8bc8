"""Telling a column's server that its order was paid: a signed POST, retried until acknowledged.

The notice is a row (``app_cashier_notice``) written in the ledger's transaction that credits the
payment (the paid hook), with an outbox job in the same transaction, so it exists exactly when the
money does. The job (``openplatform.cashier_notify``) posts it and records the answer:

- acknowledged (2xx with ``{"code": "SUCCESS"}``): ``delivered``, by a compare-and-set on
  ``pending``, so it is recorded once even if two workers ever held it;
- anything else: the attempt and its error are recorded and the job fails, so the outbox retries it
  with exponential backoff (``min(900 s, 2 s * 2**(n-1))``, jittered); after ``ATTEMPTS`` attempts
  (about 1.4 to 2.8 hours) the notice is ``given_up``, shown to admins, who may send it again.

The outbox row in PostgreSQL is the job's truth: a worker killed mid-post leaves a lease that runs out
and the relay sends the job again; Redis wiped loses only the wake-up, which the relay resends.
Delivery is therefore at least once: the column dedupes on ``notice_id`` (the same id on every try).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import signing
from app_api.core.db import session_scope, utcnow
from app_api.core.errors import NotFound
from app_api.core.http import http_client
from app_api.core.jobs import broker, outbox
from app_api.platform import audit
from app_api.platform.openplatform import cashier
from app_api.platform.openplatform.cashier_models import CashierAccount, CashierNotice, CashierOrder
from app_api.platform.openplatform.models import ExternalColumn

log = logging.getLogger(__name__)
TASK = "openplatform.cashier_notify"
# 20 attempts: the backoff sums to 1.4-2.8 hours, so a column down for an hour is still told.
ATTEMPTS = 20
TIMEOUT_S = 10.0


class NoticeNotFound(NotFound):
    code = "openplatform.cashier_notice_not_found"
    title = "未找到该通知"


class DeliveryFailed(Exception):
    """The column did not acknowledge; the outbox retries."""


async def order_paid(
    session: AsyncSession,
    *,
    cashier_order_id: str,
    payment_order_id: str,
    out_trade_no: str,
    provider: str,
    amount_fen: int,
    paid_at: dt.datetime,
) -> bool:
    """The paid hook's platform half, in the ledger's transaction. False: this payment is not the
    order's (a second payment of one order, or an unknown order), and payments refunds it."""
    order = await session.get(CashierOrder, cashier_order_id, with_for_update=True, populate_existing=True)
    if order is None or order.status != "created" or order.amount_fen != amount_fen:
        return False
    if order.expires_at is not None and paid_at > order.expires_at:
        # Paid after the deadline (a wallet page left open): the order closes (the sweep tells the
        # column) and this payment is refunded, as a second payment would be.
        await audit.record(
            session,
            action="openplatform.cashier_late_payment",
            subject_type="external_column",
            subject_id=order.column_id,
            data={"order_id": order.id, "payment_order_id": payment_order_id, "amount_fen": amount_fen},
        )
        return False
    order.status, order.paid_at = "paid", paid_at
    order.payment_order_id, order.out_trade_no, order.provider = payment_order_id, out_trade_no, provider
    session.add(order)
    notice = CashierNotice(
        column_id=order.column_id,
        order_id=order.id,
        event="order.paid",
        payload={
            "event": "order.paid",
            "order_id": order.id,
            "out_order_no": order.out_order_no,
            "amount_fen": order.amount_fen,
            "sub_account": order.sub_account,
            "provider": provider,
            "out_trade_no": out_trade_no,
            "paid_at": paid_at.astimezone(dt.UTC).isoformat(),
        },
    )
    session.add(notice)
    await session.flush()
    await outbox.enqueue(session, TASK, notice_id=notice.id)
    await audit.record(
        session,
        action="openplatform.cashier_order_paid",
        subject_type="external_column",
        subject_id=order.column_id,
        data={"order_id": order.id, "payment_order_id": payment_order_id, "amount_fen": amount_fen},
    )
    return True


def _body(notice: CashierNotice) -> bytes:
    payload = {"notice_id": notice.id, **notice.payload}
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _acknowledged(response: httpx.Response) -> bool:
    if not 200 <= response.status_code < 300:
        return False
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("code") == "SUCCESS"


async def _post(notice: CashierNotice, column: ExternalColumn, account: CashierAccount) -> str | None:
    """Post the notice; None when acknowledged, else what went wrong."""
    body = _body(notice)
    signed = signing.signed_headers(
        app_id=column.client_id,
        secret=cashier.column_secret(account),
        method="POST",
        path=urlsplit(account.notify_url).path or "/",
        body=body,
    )
    try:
        r = await http_client().post(
            account.notify_url,
            content=body,
            headers={**signed.headers, "content-type": "application/json"},
            timeout=TIMEOUT_S,
        )
    except httpx.HTTPError as e:
        return f"{type(e).__name__}: {e}"[:300]
    if _acknowledged(r):
        return None
    return f"HTTP {r.status_code}: {r.text[:200]}"


async def deliver(notice_id: str) -> str:
    """One attempt at a notice: ``delivered``, ``given_up``, ``skipped`` or raises to be retried."""
    async with session_scope() as session:
        notice = await session.get(CashierNotice, notice_id)
        if notice is None or notice.status != "pending":
            return "skipped"
        column = await session.get(ExternalColumn, notice.column_id)
        account = await session.get(CashierAccount, notice.column_id)
        assert column is not None and account is not None
    # The post happens outside any transaction: no database lock is held across the network.
    error = await _post(notice, column, account)
    now = utcnow()
    async with session_scope() as session:
        table = CashierNotice.__table__  # type: ignore[attr-defined]
        values: dict[str, Any] = {"attempts": table.c.attempts + 1, "last_attempt_at": now}
        if error is None:
            values |= {"status": "delivered", "delivered_at": now, "last_error": None}
        else:
            values["last_error"] = error
            values["status"] = sa.case((table.c.attempts + 1 >= ATTEMPTS, "given_up"), else_="pending")
        res = await session.exec(
            sa.update(table)
            .where(table.c.id == notice_id, table.c.status == "pending")
            .values(**values)
            .returning(table.c.status, table.c.attempts)
        )
        row = res.first()
        if row is None:
            return "skipped"  # another worker recorded it first
        status, attempts = row
        if status == "delivered":
            await audit.record(
                session,
                action="openplatform.cashier_notice_delivered",
                subject_type="external_column",
                subject_id=column.id,
                data={"notice_id": notice_id, "order_id": notice.order_id, "attempts": attempts},
            )
        elif status == "given_up":
            await audit.record(
                session,
                action="openplatform.cashier_notice_given_up",
                subject_type="external_column",
                subject_id=column.id,
                data={"notice_id": notice_id, "order_id": notice.order_id, "last_error": error},
            )
            log.error(
                "cashier notice %s to %s given up after %d attempts: %s",
                notice_id,
                column.id,
                attempts,
                error,
            )
    if status == "pending":
        raise DeliveryFailed(f"attempt {attempts}/{ATTEMPTS}: {error}")
    return str(status)


@broker.task(task_name=TASK, max_retries=ATTEMPTS + 4)
async def notify_column(notice_id: str) -> str:
    """Post a cashier notification to the column's server; retried with backoff until acknowledged."""
    return await deliver(notice_id)


@broker.task(task_name="openplatform.cashier_purge_nonces", schedule=[{"cron": "27 3 * * *"}])
async def purge_nonces() -> int:
    """Delete cashier request nonces older than a day (their timestamps are refused by then anyway)."""
    async with session_scope() as session:
        return await cashier.purge_nonces(session)


async def notices_of(session: AsyncSession, *, column_id: str, status: str | None) -> list[CashierNotice]:
    q = select(CashierNotice).where(CashierNotice.column_id == column_id)
    if status:
        q = q.where(CashierNotice.status == status)
    return list((await session.exec(q.order_by(col(CashierNotice.created_at).desc()).limit(200))).all())


async def retry(session: AsyncSession, *, notice_id: str, actor_id: str) -> CashierNotice:
    """An admin sends a given-up notice again (a fresh round of attempts)."""
    notice = await session.get(CashierNotice, notice_id, with_for_update=True)
    if notice is None:
        raise NoticeNotFound()
    if notice.status == "given_up":
        notice.status, notice.attempts = "pending", 0
        session.add(notice)
        await session.flush()
        await outbox.enqueue(session, TASK, notice_id=notice.id)
        await audit.record(
            session,
            action="openplatform.cashier_notice_retried",
            actor_id=actor_id,
            subject_type="external_column",
            subject_id=notice.column_id,
            data={"notice_id": notice.id},
        )
    return notice
