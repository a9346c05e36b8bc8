"""Sweeps: orders still pending after a while are asked about at their provider, credited or closed."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from payments.ledger import apply_payment, locked_order, transition
from payments.models import PENDING, OrderStatus, PaymentOrder
from payments.providers.base import ProviderError, TradeState, TradeStatus
from payments.registry import get_provider


async def sweep_order(session: AsyncSession, *, order_id: str) -> str:
    """Ask the provider about one pending order; credit it, or close it if it expired unpaid.

    Read, ask the provider, then lock and read again: no write lock is held during a network call,
    and nothing is applied to a state another transaction changed meanwhile (a notification).
    """
    order = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).first()
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    provider = get_provider(order.provider)
    status = await provider.query(order.out_trade_no)
    if status.state in (TradeState.PAID, TradeState.REFUNDED):
        return await _apply_swept(session, order_id, status, TradeState.PAID)
    if order.expires_at > utcnow():
        return "waiting"
    if status.state in (TradeState.NOT_PAID, TradeState.PAYING):
        try:
            await provider.close(order.out_trade_no)
        except ProviderError as exc:
            if exc.code != "ORDERPAID":
                raise
            again = await provider.query(order.out_trade_no)
            return await _apply_swept(session, order_id, again, again.state)
    locked = await locked_order(session, order_id=order_id)
    if locked is None or OrderStatus(locked.status) not in PENDING:
        return "settled"
    locked.closed_at = utcnow()
    await transition(
        session, locked, OrderStatus.CLOSED, source="sweep", data={"provider_state": status.state.value}
    )
    return "closed"


async def _apply_swept(session: AsyncSession, order_id: str, status: TradeStatus, state: TradeState) -> str:
    order = await locked_order(session, order_id=order_id)
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    return await apply_payment(
        session,
        order,
        source="sweep",
        provider=order.provider,
        txn_id=status.transaction_id,
        amount_fen=status.amount_fen,
        state=state,
        paid_at=status.paid_at,
    )


async def pending_order_ids(session: AsyncSession, *, older_than: dt.datetime, limit: int = 500) -> list[str]:
    rows = await session.exec(
        select(PaymentOrder.id)
        .where(col(PaymentOrder.status).in_([s.value for s in PENDING]), PaymentOrder.created_at < older_than)
        .order_by(col(PaymentOrder.created_at))
        .limit(limit)
    )
    return list(rows.all())
