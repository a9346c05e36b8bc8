"""Sweeps: orders still pending after a while are asked about at their provider, credited or closed."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from payments.ledger import apply_payment, locked_order, transition
from payments.models import PENDING, OrderStatus, PaymentOrder
from payments.providers.base import ProviderError, TradeState
from payments.registry import get_provider


async def sweep_order(session: AsyncSession, *, order_id: str) -> str:
    """Ask the provider about one pending order; credit it, or close it if it expired unpaid."""
    order = await locked_order(session, order_id=order_id)
    if order is None or OrderStatus(order.status) not in PENDING:
        return "settled"
    provider = get_provider(order.provider)
    status = await provider.query(order.out_trade_no)
    if status.state in (TradeState.PAID, TradeState.REFUNDED):
        return await apply_payment(
            session,
            order,
            source="sweep",
            provider=order.provider,
            txn_id=status.transaction_id,
            amount_fen=status.amount_fen,
            state=TradeState.PAID,
            paid_at=status.paid_at,
        )
    if order.expires_at > utcnow():
        return "waiting"
    if status.state in (TradeState.NOT_PAID, TradeState.PAYING):
        try:
            await provider.close(order.out_trade_no)
        except ProviderError as exc:
            if exc.code == "ORDERPAID":
                again = await provider.query(order.out_trade_no)
                return await apply_payment(
                    session,
                    order,
                    source="sweep",
                    provider=order.provider,
                    txn_id=again.transaction_id,
                    amount_fen=again.amount_fen,
                    state=again.state,
                    paid_at=again.paid_at,
                )
            raise
    order.closed_at = utcnow()
    await transition(
        session, order, OrderStatus.CLOSED, source="sweep", data={"provider_state": status.state.value}
    )
    return "closed"


async def pending_order_ids(session: AsyncSession, *, older_than: dt.datetime, limit: int = 500) -> list[str]:
    rows = await session.exec(
        select(PaymentOrder.id)
        .where(col(PaymentOrder.status).in_([s.value for s in PENDING]), PaymentOrder.created_at < older_than)
        .order_by(col(PaymentOrder.created_at))
        .limit(limit)
    )
    return list(rows.all())
