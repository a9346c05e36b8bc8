"""Payments HTTP API.

Routers for the app factory (all under ``/api/v1``):
- ``notify_router``: ``POST /payments/notify/{wechat_v2|wechat_v3|alipay}`` (public; signatures verified);
- ``router``: residents' own orders (pay, close, read);
- ``finance_router``: all orders, refunds, reconciliation runs, discrepancies, exports, the console page.
``router_all`` bundles the three (the payments component mounts it; the component serves the protocol
sandboxes in sandbox mode). Queries live in :mod:`payments.queries`.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app_api.core.clock import CHINA_TZ, china_today
from app_api.core.db import SessionDep, session_scope
from app_api.core.money import fen_to_yuan
from app_api.core.paging import CursorQuery, LegacyOffsetQuery, LimitQuery, OffsetQuery
from app_api.core.templates import LazyEnvironment
from app_api.platform.access import CurrentAccount, Finance, FinanceConsole, public
from payments import orders, queries
from payments.batch import batcher
from payments.errors import OrderNotFound, ProviderUnavailable
from payments.models import DISCREPANCY_NAMES, Discrepancy, PaymentOrder
from payments.notifications import flag_foreign_notification
from payments.providers.base import (
    ForeignNotification,
    InvalidNotification,
    ProviderError,
    ProviderName,
    ReplayedNotification,
)
from payments.reconciliation import runs as reconciliation
from payments.reconciliation.export import export_csv, export_xlsx
from payments.refunds import check_refund, request_refund
from payments.registry import get_provider
from payments.schemas import (
    EventPublic,
    ItemPublic,
    OrderFinance,
    OrderFinancePage,
    OrderPage,
    OrderPublic,
    PayRequest,
    PayResponse,
    RefundCreate,
    RefundPublic,
    ResolveRequest,
    RunCreate,
    RunPublic,
)

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger(__name__)

FINANCE_MAX_LIMIT = 500  # finance reads longer pages than residents (paging.MAX_LIMIT)

notify_router = APIRouter(prefix="/payments/notify", tags=["payments"])
router = APIRouter(prefix="/payments", tags=["payments"])
finance_router = APIRouter(prefix="/payments/finance", tags=["payments-finance"])


# -- notify endpoints ---------------------------------------------------------------------------


@notify_router.post("/{provider}", dependencies=[Depends(public)], include_in_schema=True)
async def notify(provider: ProviderName, request: Request) -> Response:
    """Provider notifications: verified, stored once per transaction, applied, acknowledged as documented."""
    impl = get_provider(provider.value)
    body = await request.body()
    try:
        note = await impl.parse_notification(request.headers, body)
    except ReplayedNotification:
        # Exactly this signed message was handled already: success stops the provider's retries.
        ack = impl.acknowledge(True)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
    except ForeignNotification as exc:
        async with session_scope() as session:
            await flag_foreign_notification(session, provider=provider.value, detail=str(exc))
        ack = impl.acknowledge(False, "foreign merchant")
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
    except InvalidNotification as exc:
        log.warning("payments: %s notification refused (%s): %s", provider.value, exc.reason, exc)
        ack = impl.acknowledge(False, exc.reason)
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
    # Applied with whatever else arrived meanwhile, in one transaction; answered after its commit.
    # Verify first, remember second: only an applied notification is remembered as seen. If applying
    # fails, the provider is answered with an error and its identical retry is processed again.
    try:
        await batcher().apply(note, body, request.headers)
    except Exception:
        log.exception("payments: %s notification for %s not applied", provider.value, note.out_trade_no)
        ack = impl.acknowledge(False, "processing failed")
        return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
    await impl.applied(note)
    ack = impl.acknowledge(True)
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)


# -- residents ----------------------------------------------------------------------------------


async def owned_order(order_id: str, principal: CurrentAccount, session: SessionDep) -> PaymentOrder:
    """The order, if the caller owns it (finance may read any). Others get 404, not 403."""
    order = await queries.order(session, order_id)
    if order is None or (order.account_id != principal.id and not principal.has("finance")):
        raise OrderNotFound(order_id=order_id)
    return order


OwnedOrder = Annotated[PaymentOrder, Depends(owned_order)]


@router.get("/orders", response_model=OrderPage)
async def my_orders(
    principal: CurrentAccount,
    session: SessionDep,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
    offset: LegacyOffsetQuery = 0,
) -> Any:
    """My payment orders, newest first; page on with ``cursor`` (the last ``next_cursor``)."""
    items, next_cursor = await queries.orders_of(
        session, principal.id, cursor=cursor, limit=limit, offset=offset
    )
    return OrderPage(items=[OrderPublic.model_validate(o) for o in items], next_cursor=next_cursor)


@router.get("/orders/{order_id}", response_model=OrderPublic)
async def my_order(order: OwnedOrder) -> Any:
    """One of my orders."""
    return order


@router.post("/orders/{order_id}/pay", response_model=PayResponse)
async def pay(
    order: OwnedOrder, payload: PayRequest, principal: CurrentAccount, request: Request, session: SessionDep
) -> Any:
    """Place my order at its provider; returns what the mini-program or app hands to the wallet."""
    if order.account_id != principal.id:
        raise OrderNotFound(order_id=order.id)
    client_ip = request.client.host if request.client else "127.0.0.1"
    started = await orders.start_payment(session, order=order, payer_id=payload.payer_id, client_ip=client_ip)
    return PayResponse(order=OrderPublic.model_validate(started.order), client_params=started.client_params)


@router.post("/orders/{order_id}/close", response_model=OrderPublic)
async def close(order: OwnedOrder, principal: CurrentAccount, session: SessionDep) -> Any:
    """Abandon my unpaid order (closed at the provider too)."""
    if order.account_id != principal.id:
        raise OrderNotFound(order_id=order.id)
    return await orders.close_order(session, order_id=order.id, source="resident", actor_id=principal.id)


# -- finance ------------------------------------------------------------------------------------


@finance_router.get("/orders", response_model=OrderFinancePage)
async def all_orders(
    principal: Finance,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    provider: ProviderName | None = None,
    out_trade_no: Annotated[str | None, Query(max_length=64)] = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=FINANCE_MAX_LIMIT)] = 50,
    offset: LegacyOffsetQuery = 0,
) -> Any:
    """All payment orders (finance), newest first; page on with ``cursor`` (the last ``next_cursor``)."""
    items, next_cursor = await queries.all_orders(
        session,
        status=status,
        provider=provider.value if provider else None,
        out_trade_no=out_trade_no,
        cursor=cursor,
        limit=limit,
        offset=offset,
    )
    return OrderFinancePage(items=[OrderFinance.model_validate(o) for o in items], next_cursor=next_cursor)


@finance_router.get("/orders/{order_id}/events", response_model=list[EventPublic])
async def order_events(order_id: str, principal: Finance, session: SessionDep) -> Any:
    """An order's event log, oldest first (finance)."""
    return await queries.order_events(session, order_id)


@finance_router.post(
    "/orders/{order_id}/refunds",
    response_model=RefundPublic,
    status_code=202,
    responses={200: {"model": RefundPublic, "description": "该退款单号已受理（重复提交）"}},
)
async def refund(
    order_id: str, payload: RefundCreate, principal: Finance, session: SessionDep, response: Response
) -> Any:
    """Refund all or part of a paid order (202). The same refund number again answers the refund
    already recorded (200); the same number with another order or amount is a 409."""
    refund, created = await request_refund(
        session,
        order_id=order_id,
        amount_fen=payload.amount_fen,
        out_refund_no=payload.out_refund_no,
        reason=payload.reason,
        source="finance",
        actor_id=principal.id,
    )
    if not created:
        response.status_code = 200
    return refund


@finance_router.get("/orders/{order_id}/refunds", response_model=list[RefundPublic])
async def refunds(order_id: str, principal: Finance, session: SessionDep) -> Any:
    """Refunds of an order (finance)."""
    return await queries.order_refunds(session, order_id)


@finance_router.post("/refunds/{refund_id}/check", response_model=RefundPublic)
async def check_refund_now(refund_id: str, principal: Finance, session: SessionDep) -> Any:
    """Ask the provider now about a refund not settled here, and apply its answer: an ``abnormal``
    refund after finance has handled it at the provider (it turns ``succeeded``, or ``failed`` if
    the provider closed it), or a ``processing`` one before the sweep's turn."""
    try:
        return await check_refund(session, refund_id=refund_id, actor_id=principal.id)
    except ProviderError as exc:
        raise ProviderUnavailable(detail=None) from exc


@finance_router.get("/reconciliation/runs", response_model=list[RunPublic])
async def runs(
    principal: Finance,
    session: SessionDep,
    bill_date: dt.date | None = None,
    provider: ProviderName | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Any:
    """Reconciliation runs, newest first."""
    return await queries.runs(
        session, bill_date=bill_date, provider=provider.value if provider else None, limit=limit
    )


@finance_router.post("/reconciliation/runs", response_model=RunPublic, status_code=202)
async def start_run(payload: RunCreate, principal: Finance, session: SessionDep) -> Any:
    """Reconcile one provider for any date; runs in the background (poll the run for progress)."""
    get_provider(payload.provider.value)
    return await reconciliation.start_run(
        session, provider=payload.provider.value, bill_date=payload.bill_date, actor_id=principal.id
    )


@finance_router.get("/reconciliation/runs/{run_id}", response_model=RunPublic)
async def run_detail(run_id: str, principal: Finance, session: SessionDep) -> Any:
    """One run: stage, progress, totals."""
    return await queries.run(session, run_id)


@finance_router.get("/reconciliation/runs/{run_id}/items", response_model=list[ItemPublic])
async def run_items(
    run_id: str,
    principal: Finance,
    session: SessionDep,
    category: Discrepancy | None = None,
    unresolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: OffsetQuery = 0,
) -> Any:
    """A run's discrepancies, by category (a finished run's list does not grow: offset paging)."""
    await queries.run(session, run_id)
    return await queries.run_items_page(
        session,
        run_id,
        category=category.value if category else None,
        unresolved=unresolved,
        limit=limit,
        offset=offset,
    )


@finance_router.post("/reconciliation/items/{item_id}/resolve", response_model=ItemPublic)
async def resolve(item_id: str, payload: ResolveRequest, principal: Finance, session: SessionDep) -> Any:
    """Resolve a discrepancy with a note (audited)."""
    return await reconciliation.resolve_item(
        session, item_id=item_id, note=payload.note, actor_id=principal.id
    )


@finance_router.get("/reconciliation/runs/{run_id}/export")
async def export(
    run_id: str,
    principal: FinanceConsole,
    session: SessionDep,
    format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv",
) -> Response:
    """Download a run's discrepancies as CSV or XLSX (bearer header, or the console's cookie)."""
    run = await queries.run(session, run_id)
    items = await queries.run_items(session, run_id)
    name = f"reconciliation-{run.provider}-{run.bill_date.isoformat()}"
    if format == "xlsx":
        return Response(
            export_xlsx(run, items),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return Response(
        export_csv(items),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# -- the console page (server-rendered) ---------------------------------------------------------
# Browsers use the console session of app_api.platform.console (cookie + CSRF field); API clients may still
# send the bearer header. The JSON finance API above stays bearer-only.


def _environment() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
    )


_templates = LazyEnvironment(_environment)
_templates.filters["yuan"] = lambda fen: "" if fen is None else fen_to_yuan(int(fen))
_templates.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if t else ""


def _html(request: Request, name: str, **context: Any) -> HTMLResponse:
    # Links are built from where the router is actually mounted (``/api/v1`` in the app).
    prefix = request.url_for("console").path.rsplit("/console", 1)[0]
    # Every POST form carries the login's CSRF value (set by require_console_roles).
    return HTMLResponse(
        _templates.get_template(name).render(
            names=DISCREPANCY_NAMES,
            prefix=prefix,
            csrf=request.state.csrf,
            logout_url=request.url_for("console_logout").path,
            **context,
        ),
        headers={"cache-control": "no-store"},
    )


@finance_router.get("/console", response_class=HTMLResponse)
async def console(request: Request, principal: FinanceConsole, session: SessionDep) -> HTMLResponse:
    """Finance console: recent runs, start a run."""
    recent = await queries.runs(session, limit=50)
    yesterday = china_today() - dt.timedelta(days=1)
    return _html(
        request,
        "console_runs.html",
        runs=recent,
        providers=[p.value for p in ProviderName],
        yesterday=yesterday,
    )


@finance_router.post("/console/runs")
async def console_start(
    request: Request,
    principal: FinanceConsole,
    session: SessionDep,
    provider: Annotated[ProviderName, Form()],
    bill_date: Annotated[dt.date, Form()],
) -> RedirectResponse:
    """Console form: start a run, then show it."""
    get_provider(provider.value)
    run = await reconciliation.start_run(
        session, provider=provider.value, bill_date=bill_date, actor_id=principal.id
    )
    return RedirectResponse(request.url_for("console_run", run_id=run.id).path, status_code=303)


@finance_router.get("/console/runs/{run_id}", response_class=HTMLResponse)
async def console_run(
    request: Request, run_id: str, principal: FinanceConsole, session: SessionDep
) -> HTMLResponse:
    """Console: one run's totals and discrepancies, with resolve forms and export links."""
    run = await queries.run(session, run_id)
    items = await queries.run_items(session, run_id, limit=1000)
    unresolved = await queries.unresolved_count(session, run_id)
    return _html(
        request,
        "console_run.html",
        run=run,
        items=items,
        unresolved=unresolved,
        categories=[c for c in Discrepancy],
    )


@finance_router.post("/console/items/{item_id}/resolve")
async def console_resolve(
    request: Request,
    item_id: str,
    principal: FinanceConsole,
    session: SessionDep,
    note: Annotated[str, Form(min_length=2, max_length=500)],
) -> RedirectResponse:
    """Console form: resolve a discrepancy, back to its run."""
    item = await reconciliation.resolve_item(session, item_id=item_id, note=note, actor_id=principal.id)
    return RedirectResponse(request.url_for("console_run", run_id=item.run_id).path, status_code=303)


router_all = APIRouter()
router_all.include_router(notify_router)
router_all.include_router(router)
router_all.include_router(finance_router)
