"""The payments side of the open platform's cashier (``app_api.platform.openplatform.cashier``).

The platform layer may not import payments, so payments provides the cashier's port here (orders
under the purpose ``openplatform.cashier``, refunds, refund states) and registers the purpose's paid
hook, which hands the payment to the platform in the ledger's transaction. A second payment of one
cashier order (two attempts paid) is credited as the ledger always does and refunded at once.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.errors import AppError
from app_api.platform.openplatform import cashier, cashier_notify
from payments.hooks import PaidPurpose, on_paid
from payments.models import (
    DISCREPANCY_NAMES,
    PaymentOrder,
    PaymentRefund,
    ReconciliationItem,
    ReconciliationRun,
)
from payments.orders import create_order, start_payment
from payments.refunds import request_refund
from payments.registry import get_provider

REFUND_UNCLAIMED = "该订单已由另一笔支付完成，本笔费用原路退回"


def _state(r: PaymentRefund) -> cashier.RefundState:
    return cashier.RefundState(
        payment_refund_id=r.id, out_refund_no=r.out_refund_no, amount_fen=r.amount_fen, status=r.status
    )


class LedgerCashier:
    async def open(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        cashier_order_id: str,
        amount_fen: int,
        description: str,
        provider: str,
        channel: str,
        payer_id: str | None,
        client_ip: str,
    ) -> cashier.PaymentOpened:
        order = await create_order(
            session,
            account_id=account_id,
            purpose=cashier.PURPOSE,
            purpose_ref=cashier_order_id,
            amount_fen=amount_fen,
            description=description,
            provider=provider,
            channel=channel,
        )
        started = await start_payment(session, order=order, payer_id=payer_id, client_ip=client_ip)
        return cashier.PaymentOpened(
            payment_order_id=order.id, out_trade_no=order.out_trade_no, client_params=started.client_params
        )

    async def refund(
        self,
        session: AsyncSession,
        *,
        payment_order_id: str,
        amount_fen: int,
        out_refund_no: str,
        reason: str | None,
    ) -> cashier.RefundState:
        r, _ = await request_refund(
            session,
            order_id=payment_order_id,
            amount_fen=amount_fen,
            out_refund_no=out_refund_no,
            reason=reason,
            source=cashier.REFUND_SOURCE,
            actor_id=None,
        )
        return _state(r)

    async def refunds(
        self, session: AsyncSession, payment_refund_ids: list[str]
    ) -> dict[str, cashier.RefundState]:
        rows = await session.exec(select(PaymentRefund).where(col(PaymentRefund.id).in_(payment_refund_ids)))
        return {r.id: _state(r) for r in rows.all()}

    async def reconciliation(
        self, session: AsyncSession, *, day: dt.date, payments: list[tuple[str, str]]
    ) -> dict[str, str]:
        """Each (provider, out_trade_no) paid on ``day``: ``matched``, the discrepancy's category, or
        ``not_run``. A run covers a payment when it finished for that day after the payment and its
        provider's merchant (runs use the configured one) is the one the order was opened under."""
        numbers = [n for _, n in payments]
        orders = {
            o.out_trade_no: o
            for o in (
                await session.exec(select(PaymentOrder).where(col(PaymentOrder.out_trade_no).in_(numbers)))
            ).all()
        }
        out = dict.fromkeys(numbers, "not_run")
        for provider in {p for p, _ in payments}:
            try:
                merchant = get_provider(provider).merchant_id
            except AppError:
                continue
            runs = (
                await session.exec(
                    select(ReconciliationRun)
                    .where(
                        ReconciliationRun.provider == provider,
                        ReconciliationRun.bill_date == day,
                        ReconciliationRun.status == "done",
                    )
                    .order_by(col(ReconciliationRun.started_at).desc())
                )
            ).all()
            for number in (n for p, n in payments if p == provider):
                order = orders.get(number)
                if order is None or order.paid_at is None or order.merchant_id not in (merchant, ""):
                    continue
                run = next((r for r in runs if r.started_at >= order.paid_at), None)
                if run is None:
                    continue
                item = (
                    await session.exec(
                        select(ReconciliationItem).where(
                            ReconciliationItem.run_id == run.id, ReconciliationItem.out_trade_no == number
                        )
                    )
                ).first()
                out[number] = item.category if item is not None else "matched"
        return out

    async def discrepancy_names(self) -> dict[str, str]:
        return {k.value: v for k, v in DISCREPANCY_NAMES.items()}


cashier.provide_payments(LedgerCashier())


@on_paid(cashier.PURPOSE)
async def cashier_paid(session: AsyncSession, paid: PaidPurpose) -> None:
    claimed = await cashier_notify.order_paid(
        session,
        cashier_order_id=paid.purpose_ref,
        payment_order_id=paid.order_id,
        out_trade_no=paid.out_trade_no,
        provider=paid.provider,
        amount_fen=paid.amount_fen,
        paid_at=paid.paid_at,
    )
    if not claimed:
        await request_refund(
            session,
            order_id=paid.order_id,
            amount_fen=paid.amount_fen,
            out_refund_no=f"OPD{paid.order_id}",
            reason=REFUND_UNCLAIMED,
            source=cashier.REFUND_SOURCE,
            actor_id=None,
        )
