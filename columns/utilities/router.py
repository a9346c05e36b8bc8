from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app_api.core.clock import china_today
from app_api.core.db import SessionDep
from app_api.core.money import fen_to_yuan
from app_api.core.paging import CursorQuery, LegacyOffsetQuery, LimitQuery
from app_api.platform.access import Admin, CurrentAccount
from columns.utilities import bills, bindings, delivery, paying
from columns.utilities.config import get_config, kind_name
from columns.utilities.dependencies import OwnedBinding, OwnedPayment
from columns.utilities.models import Bill, BillerNotice, Binding, NoticeStatus, Payment
from columns.utilities.schemas import (
    AccountBills,
    BillerPublic,
    BillPublic,
    BindingPublic,
    BindRequest,
    NoticePage,
    NoticePublic,
    OutstandingPublic,
    PaymentPage,
    PaymentPublic,
    PayRequest,
    PayStarted,
    ReceiptLinePublic,
)

router = APIRouter()


def _binding_public(b: Binding) -> BindingPublic:
    biller = get_config().biller(b.biller_code)
    return BindingPublic(
        id=b.id,
        biller_code=b.biller_code,
        biller_name=biller.name if biller else b.biller_code,
        kind=b.kind,
        kind_name=kind_name(b.kind),
        account_no=b.account_no,
        holder_masked=b.holder_masked,
        address_masked=b.address_masked,
        label=b.label,
        created_at=b.created_at,
    )


def _bill_public(b: Bill, today: dt.date) -> BillPublic:
    return BillPublic(
        id=b.id,
        bill_no=b.bill_no,
        period=b.period,
        amount_fen=b.amount_fen,
        amount_yuan=fen_to_yuan(b.amount_fen),
        due_date=b.due_date,
        usage=b.usage,
        overdue=b.due_date < today,
    )


def _status(line: paying.ReceiptLine) -> Literal["waiting", "confirmed", "refunded", "delayed"]:
    if line.item.outcome == "refunded":
        return "refunded"
    n: BillerNotice | None = line.notice
    if n is None or n.status == NoticeStatus.PENDING:
        return "waiting"
    return "confirmed" if n.status == NoticeStatus.DELIVERED else "delayed"


def _payment_public(p: Payment, lines: list[paying.ReceiptLine]) -> PaymentPublic:
    cfg = get_config()
    return PaymentPublic(
        id=p.id,
        out_trade_no=p.out_trade_no,
        provider=p.provider,
        amount_fen=p.amount_fen,
        amount_yuan=fen_to_yuan(p.amount_fen),
        status=p.status,
        created_at=p.created_at,
        paid_at=p.paid_at,
        lines=[
            ReceiptLinePublic(
                bill_no=ln.bill.bill_no,
                biller_name=(b.name if (b := cfg.biller(ln.bill.biller_code)) else ""),
                kind_name=kind_name(ln.binding.kind),
                account_no=ln.bill.account_no,
                period=ln.bill.period,
                amount_fen=ln.item.amount_fen,
                outcome=ln.item.outcome,
                biller_status=_status(ln),
                receipt_no=ln.notice.receipt_no if ln.notice else None,
            )
            for ln in lines
        ],
    )


@router.get("/billers")
async def billers(account: CurrentAccount) -> list[BillerPublic]:
    """The water, power and gas companies residents can bind accounts of."""
    return [
        BillerPublic(code=b.code, kind=b.kind, kind_name=kind_name(b.kind), name=b.name)
        for b in get_config().billers
    ]


@router.get("/bindings")
async def list_bindings(account: CurrentAccount, session: SessionDep) -> list[BindingPublic]:
    """The resident's bound household accounts."""
    return [_binding_public(b) for b in await bindings.active_bindings(session, account_id=account.id)]


@router.post("/bindings", status_code=201)
async def bind(body: BindRequest, account: CurrentAccount, session: SessionDep) -> BindingPublic:
    """Bind a household account: the biller checks the holder's name."""
    b = await bindings.bind(
        session,
        account_id=account.id,
        biller_code=body.biller_code,
        account_no=body.account_no,
        holder_name=body.holder_name,
        label=body.label,
    )
    return _binding_public(b)


@router.delete("/bindings/{binding_id}", status_code=204)
async def unbind(binding: OwnedBinding, session: SessionDep) -> None:
    """Unbind a household account (its payment history stays)."""
    await bindings.unbind(session, binding=binding)


@router.get("/bills")
async def outstanding(account: CurrentAccount, session: SessionDep) -> OutstandingPublic:
    """Outstanding bills of every bound account, asked of the billers now."""
    today = china_today()
    views = await bills.outstanding(session, account_id=account.id)
    accounts = [
        AccountBills(
            binding=_binding_public(v.binding),
            bills=[_bill_public(b, today) for b in v.bills],
            total_fen=sum(b.amount_fen for b in v.bills),
            unavailable=v.error.title if v.error else None,
        )
        for v in views
    ]
    return OutstandingPublic(accounts=accounts, total_fen=sum(a.total_fen for a in accounts))


@router.post("/payments", status_code=201)
async def pay(body: PayRequest, request: Request, account: CurrentAccount, session: SessionDep) -> PayStarted:
    """Pay one or several bills in one order; the client hands ``client_params`` to the wallet."""
    payment, params = await paying.create_payment(
        session,
        account_id=account.id,
        bill_ids=body.bill_ids,
        provider=body.provider,
        channel=body.channel,
        payer_id=body.payer_id,
        client_ip=request.client.host if request.client else "127.0.0.1",
    )
    assert payment.out_trade_no is not None
    return PayStarted(
        payment_id=payment.id,
        out_trade_no=payment.out_trade_no,
        amount_fen=payment.amount_fen,
        client_params=params,
    )


@router.get("/payments")
async def history(
    account: CurrentAccount,
    session: SessionDep,
    cursor: CursorQuery = None,
    offset: LegacyOffsetQuery = 0,
    limit: Annotated[int, Query(ge=1, le=50)] = 20,
) -> PaymentPage:
    """Paid bills, newest first; page on with ``cursor`` = the previous page's ``next_cursor``."""
    rows, total, next_cursor = await paying.history(
        session, account_id=account.id, cursor=cursor, offset=offset, limit=limit
    )
    lines = await paying.payment_lines(session, payments=rows)
    return PaymentPage(
        items=[_payment_public(p, lines[p.id]) for p in rows], total=total, next_cursor=next_cursor
    )


@router.get("/payments/{payment_id}")
async def receipt(payment: OwnedPayment, session: SessionDep) -> PaymentPublic:
    """One payment with its receipt lines (the biller's receipt number once it has confirmed)."""
    lines = await paying.payment_lines(session, payments=[payment])
    return _payment_public(payment, lines[payment.id])


@router.get("/admin/notices")
async def notices(
    admin: Admin,
    session: SessionDep,
    status: Literal["pending", "delivered", "dead"] | None = None,
    cursor: CursorQuery = None,
    offset: LegacyOffsetQuery = 0,
    limit: LimitQuery = 50,
) -> NoticePage:
    """Biller notifications, newest first (``status=dead``: the dead-letter list); page on with ``cursor``."""
    rows, total, next_cursor = await delivery.list_notices(
        session, status=status, cursor=cursor, offset=offset, limit=limit
    )
    return NoticePage(
        items=[NoticePublic.model_validate(r, from_attributes=True) for r in rows],
        total=total,
        next_cursor=next_cursor,
    )


@router.post("/admin/notices/{notice_id}/requeue")
async def requeue(notice_id: str, admin: Admin, session: SessionDep) -> NoticePublic:
    """Send a dead notification again."""
    n = await delivery.requeue(session, notice_id=notice_id, actor_id=admin.id)
    return NoticePublic.model_validate(n, from_attributes=True)
