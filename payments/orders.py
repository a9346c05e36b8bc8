"""Orders: a column opens one for its purpose, the resident places it at the provider or abandons it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import lock_for_writing, utcnow
from app_api.platform import audit
from payments.config import get_payments_settings
from payments.errors import (
    IllegalTransition,
    OrderNotFound,
    ProviderRefused,
    ProviderUnavailable,
    PurposeAlreadyPaid,
)
from payments.ledger import event_for, locked_order, new_out_trade_no, purpose_key, transition
from payments.models import PAID_LIKE, PENDING, OrderStatus, PaymentOrder
from payments.providers.base import Channel, CreatePayment, ProviderError
from payments.registry import get_provider, notify_url


async def create_order(
    session: AsyncSession,
    *,
    account_id: str,
    purpose: str,
    purpose_ref: str,
    amount_fen: int,
    description: str,
    provider: str,
    channel: Channel | str,
    ttl_s: int | None = None,
) -> PaymentOrder:
    """Open an order for a column's purpose. Refused when that purpose is already paid."""
    impl = get_provider(provider)  # refuse an unconfigured provider before anything is written
    if amount_fen <= 0:
        raise IllegalTransition("金额必须大于零")
    key = purpose_key(purpose, purpose_ref)
    # The check and the insert under one write lock (SQLite; on PostgreSQL, one per purpose), so no
    # payment for the purpose commits between them. A payment that still races in is flagged by
    # ledger.claim_purposes, never credited twice.
    await lock_for_writing(session, f"payments.purpose:{key}")
    paid = await session.exec(
        select(PaymentOrder.id).where(
            PaymentOrder.purpose_key == key, col(PaymentOrder.status).in_([s.value for s in PAID_LIKE])
        )
    )
    if paid.first() is not None:
        raise PurposeAlreadyPaid(purpose=purpose)
    now = utcnow()
    order = PaymentOrder(
        out_trade_no=new_out_trade_no(),
        account_id=account_id,
        purpose=purpose,
        purpose_ref=purpose_ref,
        purpose_key=key,
        description=description[:128],
        amount_fen=amount_fen,
        provider=provider,
        merchant_id=impl.merchant_id,
        channel=Channel(channel).value,
        expires_at=now + dt.timedelta(seconds=ttl_s or get_payments_settings().order_ttl_s),
    )
    session.add(order)
    await session.flush()
    await event_for(
        session,
        order.id,
        kind="created",
        source=f"column:{purpose.split('.')[0]}",
        to_status="created",
        actor_id=account_id,
        data={"amount_fen": amount_fen},
    )
    await audit.record(
        session,
        action="payments.order_created",
        actor_id=account_id,
        subject_type="payments_order",
        subject_id=order.id,
        data={"purpose": purpose, "amount_fen": amount_fen, "provider": provider},
    )
    return order


@dataclass(frozen=True, slots=True)
class PaymentStart:
    order: PaymentOrder
    client_params: dict[str, str]


async def start_payment(
    session: AsyncSession, *, order: PaymentOrder, payer_id: str | None, client_ip: str
) -> PaymentStart:
    """Place the order at its provider; the client hands ``client_params`` to the wallet."""
    if OrderStatus(order.status) not in PENDING:
        raise IllegalTransition("该订单已支付或已关闭", status=order.status)
    if order.expires_at <= utcnow():
        raise IllegalTransition("订单已过期，请重新下单", status=order.status)
    provider = get_provider(order.provider)
    try:
        created = await provider.create(
            CreatePayment(
                out_trade_no=order.out_trade_no,
                amount_fen=order.amount_fen,
                description=order.description,
                channel=Channel(order.channel),
                notify_url=notify_url(order.provider),
                client_ip=client_ip,
                payer_id=payer_id,
                expire_at=order.expires_at,
            )
        )
    except ProviderError as exc:
        if exc.retryable:
            raise ProviderUnavailable(detail=None, provider=order.provider) from exc
        raise ProviderRefused(str(exc), provider=order.provider, provider_code=exc.code) from exc
    except ValueError as exc:
        raise IllegalTransition(str(exc)) from exc
    locked = await locked_order(session, order_id=order.id)
    assert locked is not None
    if locked.status == OrderStatus.CREATED:
        await transition(
            session,
            locked,
            OrderStatus.PAYING,
            source="resident",
            actor_id=locked.account_id,
            data={"prepay_id": created.prepay_id},
        )
    return PaymentStart(order=locked, client_params=created.client_params)


async def close_order(
    session: AsyncSession, *, order_id: str, source: str, actor_id: str | None
) -> PaymentOrder:
    """Close an unpaid order here and at its provider (a resident abandoning it, or finance).

    The provider is called without holding the write lock; the order is then locked and checked
    again, so a payment applied meanwhile is never overwritten by the close.
    """
    found = (await session.exec(select(PaymentOrder).where(PaymentOrder.id == order_id))).first()
    if found is None:
        raise OrderNotFound(order_id=order_id)
    if OrderStatus(found.status) not in PENDING:
        raise IllegalTransition("只有待支付的订单可以关闭", status=found.status)
    try:
        await get_provider(found.provider).close(found.out_trade_no)
    except ProviderError as exc:
        if exc.code == "ORDERPAID":
            raise IllegalTransition("该订单已在支付渠道付款，稍后将自动入账", status=found.status) from exc
        raise ProviderUnavailable(provider=found.provider) from exc
    order = await locked_order(session, order_id=order_id)
    assert order is not None
    if OrderStatus(order.status) not in PENDING:
        raise IllegalTransition("只有待支付的订单可以关闭", status=order.status)
    order.closed_at = utcnow()
    await transition(session, order, OrderStatus.CLOSED, source=source, actor_id=actor_id)
    return order
