"""The cashier's HTTP API: a column's server (signed requests), the resident, finance and admins."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.db import SessionDep
from app_api.core.errors import AppError, ValidationFailed
from app_api.core.money import fen_to_yuan
from app_api.core.templates import LazyEnvironment
from app_api.platform.access import CurrentAccount, public, require_console_roles, require_roles
from app_api.platform.accounts.principal import Principal
from app_api.platform.openplatform import cashier, cashier_notify, service
from app_api.platform.openplatform.cashier_models import CashierOrder
from app_api.platform.openplatform.cashier_schemas import (
    CashierRegister,
    CashierRegistered,
    FinanceColumn,
    FinanceDay,
    FinanceOrder,
    NoticeList,
    NoticeOut,
    OrderIn,
    OrderOut,
    PayIn,
    PayOut,
    RefundIn,
    RefundOut,
    ResidentOrderOut,
)
from app_api.platform.openplatform.models import ExternalColumn

if TYPE_CHECKING:
    from jinja2 import Environment

router = APIRouter(tags=["openplatform-cashier"])
Admin = Annotated[Principal, Depends(require_roles("admin"))]
Finance = Annotated[Principal, Depends(require_roles("finance"))]
FinanceConsole = Annotated[Principal, Depends(require_console_roles("finance"))]
M = TypeVar("M", bound=BaseModel)
PAY_PATH = "/api/v1/cashier/orders/{id}"


async def _signed(request: Request, session: AsyncSession) -> tuple[ExternalColumn, bytes]:
    body = await request.body()
    try:
        column = await cashier.authenticate(
            session,
            headers={k.lower(): v for k, v in request.headers.items()},
            method=request.method,
            path=request.url.path,
            body=body,
        )
    except AppError:
        await session.commit()  # the refusal's audit entry stays
        raise
    return column, body


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as e:
        fields = [".".join(str(p) for p in err["loc"]) for err in e.errors()]
        raise ValidationFailed(f"请求内容不符合要求：{'、'.join(fields)}", fields=fields) from None


async def _order_out(session: AsyncSession, order: CashierOrder) -> OrderOut:
    refunds = [
        RefundOut(
            id=r.id,
            out_refund_no=r.out_refund_no,
            amount_fen=r.amount_fen,
            reason=r.reason,
            status=state.status if state else "requested",
            created_at=r.created_at,
        )
        for r, state in await cashier.refunds_of(session, order)
    ]
    return OrderOut.model_validate(
        {**order.model_dump(), "pay_path": PAY_PATH.format(id=order.id), "refunds": refunds}
    )


def _json(model: BaseModel, status: int) -> JSONResponse:
    return JSONResponse(model.model_dump(mode="json"), status_code=status)


# --- a column's server --------------------------------------------------------------------------------


@router.post("/openplatform/cashier/orders", status_code=201, dependencies=[Depends(public)])
async def create_order(request: Request, session: SessionDep) -> JSONResponse:
    """Open an order for a resident (signed): 201 when created, 200 with the same order when this
    ``out_order_no`` was sent already with the same content."""
    column, body = await _signed(request, session)
    try:
        data = _parse(OrderIn, body)
        order, now = await cashier.create_order(
            session,
            column,
            out_order_no=data.out_order_no,
            subject=data.sub,
            amount_fen=data.amount_fen,
            description=data.description,
            sub_account=data.sub_account,
        )
    except AppError:
        await session.commit()  # the nonce and the refusal's audit entry; nothing else was written
        raise
    return _json(await _order_out(session, order), 201 if now else 200)


@router.get("/openplatform/cashier/orders/{order_id}", dependencies=[Depends(public)])
async def get_order(order_id: str, request: Request, session: SessionDep) -> OrderOut:
    """One of the column's own orders with its refunds (signed); another column's is 404."""
    column, _ = await _signed(request, session)
    try:
        order = await cashier.own_order(session, column, order_id)
    except AppError:
        await session.commit()
        raise
    return await _order_out(session, order)


@router.post(
    "/openplatform/cashier/orders/{order_id}/refunds", status_code=201, dependencies=[Depends(public)]
)
async def refund_order(order_id: str, request: Request, session: SessionDep) -> JSONResponse:
    """Refund part or all of a paid order (signed): 201 when requested, 200 with the same refund when
    this ``out_refund_no`` was sent already. Never more than was paid."""
    column, body = await _signed(request, session)
    try:
        data = _parse(RefundIn, body)
        r, now = await cashier.refund(
            session,
            column,
            order_id=order_id,
            out_refund_no=data.out_refund_no,
            amount_fen=data.amount_fen,
            reason=data.reason,
        )
    except AppError:
        # Every refusal is raised before anything is written: the nonce and the audit entry stay.
        await session.commit()
        raise
    out = RefundOut(
        id=r.id,
        out_refund_no=r.out_refund_no,
        amount_fen=r.amount_fen,
        reason=r.reason,
        status="requested"
        if now
        else (await cashier.payments_port().refunds(session, [r.payment_refund_id]))[
            r.payment_refund_id
        ].status,
        created_at=r.created_at,
    )
    return _json(out, 201 if now else 200)


# --- the resident ------------------------------------------------------------------------------------


@router.get("/cashier/orders/{order_id}")
async def resident_order(order_id: str, principal: CurrentAccount, session: SessionDep) -> ResidentOrderOut:
    """A column's order as the resident sees it before paying (their own orders only)."""
    order, column = await cashier.resident_order(session, account_id=principal.id, order_id=order_id)
    return ResidentOrderOut(
        id=order.id,
        column_name=column.name,
        description=order.description,
        amount_fen=order.amount_fen,
        status=order.status,
        paid_at=order.paid_at,
        expires_at=order.expires_at,
    )


@router.post("/cashier/orders/{order_id}/pay")
async def pay(
    order_id: str, body: PayIn, request: Request, principal: CurrentAccount, session: SessionDep
) -> PayOut:
    """Pay a column's order with WeChat Pay or Alipay; ``client_params`` go to the wallet's SDK."""
    try:
        order, opened = await cashier.pay(
            session,
            account_id=principal.id,
            order_id=order_id,
            provider=body.provider,
            channel=body.channel,
            payer_id=body.payer_id,
            client_ip=request.client.host if request.client else "127.0.0.1",
        )
    except cashier.OrderClosed:
        await session.commit()  # the refusal's audit entry stays; nothing else was written
        raise
    return PayOut(
        order_id=order.id,
        payment_order_id=opened.payment_order_id,
        out_trade_no=opened.out_trade_no,
        client_params=opened.client_params,
    )


# --- finance -----------------------------------------------------------------------------------------


async def _finance_day(session: AsyncSession, day: dt.date | None) -> FinanceDay:
    day = day or dt.datetime.now(CHINA_TZ).date()
    paid = await cashier.paid_on(session, day)
    standing = await cashier.payments_port().reconciliation(
        session,
        day=day,
        payments=[
            (o.provider, o.out_trade_no)
            for _, orders in paid
            for o in orders
            if o.provider and o.out_trade_no
        ],
    )
    columns = []
    for column, orders in paid:
        rows = [
            FinanceOrder(
                order_id=o.id,
                out_order_no=o.out_order_no,
                out_trade_no=o.out_trade_no,
                provider=o.provider,
                sub_account=o.sub_account,
                amount_fen=o.amount_fen,
                refunded_fen=o.refunded_fen,
                paid_at=o.paid_at,
                reconciliation=standing.get(o.out_trade_no or "", "not_run"),
            )
            for o in orders
        ]
        columns.append(
            FinanceColumn(
                column_id=column.id,
                column_name=column.name,
                client_id=column.client_id,
                paid_count=len(orders),
                paid_fen=sum(o.amount_fen for o in orders),
                refunded_fen=sum(o.refunded_fen for o in orders),
                unmatched_count=sum(r.reconciliation not in ("matched", "not_run") for r in rows),
                orders=rows,
            )
        )
    return FinanceDay(day=day, columns=columns)


Day = Annotated[dt.date | None, Query(title="日期（北京时间）")]


@router.get("/finance/external-columns/payments")
async def finance_day(_: Finance, session: SessionDep, day: Day = None) -> FinanceDay:
    """Each third-party column's payments of a China-time day (default today), by column name, each
    with its standing in the day's reconciliation."""
    return await _finance_day(session, day)


def _environment() -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("app_api.platform.openplatform", "templates"),
        autoescape=select_autoescape(default=True),
    )


_templates = LazyEnvironment(_environment)
PROVIDER_NAMES = {"wechat_v2": "微信支付", "wechat_v3": "微信支付", "alipay": "支付宝"}


@router.get("/finance/external-columns/console", response_class=HTMLResponse)
async def finance_console(
    request: Request, _: FinanceConsole, session: SessionDep, day: Day = None
) -> HTMLResponse:
    """Finance console page: each third-party column's payments of a day, by name, with reconciliation."""
    data = await _finance_day(session, day)
    names = await cashier.payments_port().discrepancy_names()
    html = _templates.get_template("cashier_console.html").render(
        day=data,
        yuan=fen_to_yuan,
        local=lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if t else "",
        providers=PROVIDER_NAMES,
        standing={"matched": "已对平", "not_run": "未对账", **names},
        csrf=getattr(request.state, "csrf", ""),
        logout_url=request.url_for("console_logout").path,
    )
    return HTMLResponse(html, headers={"cache-control": "no-store"})


# --- administration ----------------------------------------------------------------------------------


@router.put("/admin/external-columns/{column_id}/cashier")
async def register_cashier(
    column_id: str, data: CashierRegister, admin: Admin, session: SessionDep
) -> CashierRegistered:
    """Open or change a column's cashier; the signing key is in this answer only (first time or rotated)."""
    column = await service.get(session, column_id)
    account, secret = await cashier.register(
        session,
        column,
        notify_url=data.notify_url,
        sub_accounts=data.sub_accounts,
        rotate_secret=data.rotate_secret,
        actor_id=admin.id,
    )
    return CashierRegistered(
        column_id=column.id,
        notify_url=account.notify_url,
        sub_accounts=account.sub_accounts,
        cashier_secret=secret,
    )


def _notice_out(n: Any) -> NoticeOut:
    return NoticeOut.model_validate(n, from_attributes=True)


@router.get("/admin/external-columns/{column_id}/cashier/notices")
async def column_notices(
    column_id: str,
    _: Admin,
    session: SessionDep,
    status: Annotated[str | None, Query(pattern="^(pending|delivered|given_up)$")] = None,
) -> NoticeList:
    """A column's payment notifications (``status=given_up``: those its server never acknowledged)."""
    await service.get(session, column_id)
    return NoticeList(
        notices=[
            _notice_out(n)
            for n in await cashier_notify.notices_of(session, column_id=column_id, status=status)
        ]
    )


@router.post("/admin/cashier-notices/{notice_id}/retry")
async def retry_notice(notice_id: str, admin: Admin, session: SessionDep) -> NoticeOut:
    """Send a given-up notification again (a new round of attempts; audited)."""
    return _notice_out(await cashier_notify.retry(session, notice_id=notice_id, actor_id=admin.id))
