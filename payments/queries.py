"""Reading the ledger for the HTTP API: residents' own orders, finance's lists, reconciliation runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from payments.errors import RunNotFound
from payments.models import (
    PaymentEvent,
    PaymentOrder,
    PaymentRefund,
    ReconciliationItem,
    ReconciliationRun,
)

# -- orders -------------------------------------------------------------------------------------


async def order(session: AsyncSession, order_id: str) -> PaymentOrder | None:
    return await session.get(PaymentOrder, order_id)


def _order_key(o: PaymentOrder) -> tuple[dt.datetime, str]:
    return o.created_at, o.id


async def _order_page(
    session: AsyncSession, stmt: Any, *, cursor: str | None, limit: int, offset: int
) -> tuple[list[PaymentOrder], str | None]:
    """One page of ``stmt``'s orders, newest first: after ``cursor``, or (deprecated) ``offset`` rows in."""
    at, row_id = col(PaymentOrder.created_at), col(PaymentOrder.id)
    stmt = paging.after(stmt, at_column=at, id_column=row_id, cursor=cursor, limit=limit)
    if offset and not cursor:
        stmt = stmt.offset(offset)
    return paging.page((await session.exec(stmt)).all(), limit=limit, key=_order_key)


async def orders_of(
    session: AsyncSession, account_id: str, *, cursor: str | None, limit: int, offset: int = 0
) -> tuple[list[PaymentOrder], str | None]:
    """An account's orders, newest first, and the next page's cursor."""
    stmt = select(PaymentOrder).where(PaymentOrder.account_id == account_id)
    return await _order_page(session, stmt, cursor=cursor, limit=limit, offset=offset)


async def all_orders(
    session: AsyncSession,
    *,
    status: str | None,
    provider: str | None,
    out_trade_no: str | None,
    cursor: str | None,
    limit: int,
    offset: int = 0,
) -> tuple[list[PaymentOrder], str | None]:
    """All orders (finance), newest first, optionally of one status, provider or number."""
    stmt = select(PaymentOrder)
    if status:
        stmt = stmt.where(PaymentOrder.status == status)
    if provider:
        stmt = stmt.where(PaymentOrder.provider == provider)
    if out_trade_no:
        stmt = stmt.where(PaymentOrder.out_trade_no == out_trade_no)
    return await _order_page(session, stmt, cursor=cursor, limit=limit, offset=offset)


async def order_events(session: AsyncSession, order_id: str) -> Sequence[PaymentEvent]:
    """An order's event log, oldest first."""
    rows = await session.exec(
        select(PaymentEvent).where(PaymentEvent.order_id == order_id).order_by(col(PaymentEvent.created_at))
    )
    return rows.all()


async def order_refunds(session: AsyncSession, order_id: str) -> Sequence[PaymentRefund]:
    """An order's refunds, oldest first."""
    rows = await session.exec(
        select(PaymentRefund)
        .where(PaymentRefund.order_id == order_id)
        .order_by(col(PaymentRefund.created_at))
    )
    return rows.all()


# -- reconciliation -----------------------------------------------------------------------------


async def runs(
    session: AsyncSession, *, bill_date: dt.date | None = None, provider: str | None = None, limit: int
) -> Sequence[ReconciliationRun]:
    """Reconciliation runs, newest first, optionally of one day or provider."""
    stmt = select(ReconciliationRun)
    if bill_date:
        stmt = stmt.where(ReconciliationRun.bill_date == bill_date)
    if provider:
        stmt = stmt.where(ReconciliationRun.provider == provider)
    return (await session.exec(stmt.order_by(col(ReconciliationRun.started_at).desc()).limit(limit))).all()


async def run(session: AsyncSession, run_id: str) -> ReconciliationRun:
    found = await session.get(ReconciliationRun, run_id)
    if found is None:
        raise RunNotFound(run_id=run_id)
    return found


async def run_items_page(
    session: AsyncSession,
    run_id: str,
    *,
    category: str | None,
    unresolved: bool,
    limit: int,
    offset: int,
) -> Sequence[ReconciliationItem]:
    """A page of a run's discrepancies, by category then id, optionally of one category or unresolved."""
    stmt = select(ReconciliationItem).where(ReconciliationItem.run_id == run_id)
    if category:
        stmt = stmt.where(ReconciliationItem.category == category)
    if unresolved:
        stmt = stmt.where(col(ReconciliationItem.resolved_at).is_(None))
    stmt = stmt.order_by(col(ReconciliationItem.category), col(ReconciliationItem.id))
    return (await session.exec(stmt.limit(limit).offset(offset))).all()


async def run_items(
    session: AsyncSession, run_id: str, *, limit: int | None = None
) -> Sequence[ReconciliationItem]:
    """A run's discrepancies by category (all of them, or the first ``limit``)."""
    stmt = (
        select(ReconciliationItem)
        .where(ReconciliationItem.run_id == run_id)
        .order_by(col(ReconciliationItem.category))
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return (await session.exec(stmt)).all()


async def unresolved_count(session: AsyncSession, run_id: str) -> int:
    return (
        await session.exec(
            select(func.count())
            .select_from(ReconciliationItem)
            .where(ReconciliationItem.run_id == run_id, col(ReconciliationItem.resolved_at).is_(None))
        )
    ).one()
