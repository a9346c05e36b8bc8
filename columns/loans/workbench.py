"""The bank officers' screens of the staff workbench (server-rendered, under ``/workbench``).

The loan queue of the officer's institution, an application with the consented data, and the
actions accept / request information / approve / reject / disburse. The screens parse the forms
and show the outcome; every rule (institution scope, consent, ranges, transitions, notifying the
resident) is the loans services' (:mod:`columns.loans.review`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app_api.core.clock import CHINA_TZ
from app_api.core.db import SessionDep, savepoint
from app_api.core.errors import AppError
from app_api.core.money import fen_to_yuan, yuan_to_fen
from app_api.platform.accounts.principal import Principal
from app_api.platform.workbench import (
    IDEM_FIELD,
    FieldErrors,
    WorkbenchStaff,
    environment,
    forbidden,
    once,
    render,
)
from columns.loans import review
from columns.loans.applications import STATUS_NAMES
from columns.loans.errors import AmountOutOfRange, ApplicationNotFound, RateOutOfRange, TermOutOfRange
from columns.loans.models import TRANSITIONS, Application, Status
from columns.loans.schemas import InfoRequest, Rejection
from columns.loans.views import application_views, officer_view

ROLE = "bank_officer"
BASE = "/api/v1/columns/loans/workbench"
PAGE_SIZE = 50
NOT_OURS = "该贷款申请不属于您所在的机构（或不存在），无权查看"

# action (URL and form) -> (service action, button label, what the resident is told besides the status)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "accept": ("accept", "受理", ""),
    "request-info": ("request_info", "要求补充材料", "并附上您填写的补充要求"),
    "approve": ("approve", "批准", "并告知批准金额、年利率和期限"),
    "reject": ("reject", "拒绝", "并附上您填写的拒绝原因"),
    "disburse": ("disburse", "放款", "并告知放款金额"),
}

_env = environment(Path(__file__).parent / "templates" / "workbench")
_env.filters["yuan"] = lambda fen: "" if fen is None else fen_to_yuan(int(fen))
_env.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if t else ""
_env.filters["rate"] = lambda bp: "" if bp is None else f"{bp / 100:.2f}%"
_env.globals["status_names"] = {s.value: n for s, n in STATUS_NAMES.items()}
_env.globals["action_names"] = {
    "submit": "提交申请",
    "accept": "受理",
    "request_info": "要求补充材料",
    "supplement": "居民补充",
    "approve": "批准",
    "reject": "拒绝",
    "disburse": "放款",
    "withdraw": "居民撤回",
}

router = APIRouter(prefix="/workbench", tags=["workbench"])


def _available(status: str) -> list[dict[str, str]]:
    """The actions the state machine allows from ``status``, each with what the resident is told."""
    out = []
    for key, (action, label, extra) in ACTIONS.items():
        target = TRANSITIONS[action].get(Status(status))
        if target is not None:
            tells = f"居民将收到通知：贷款状态更新为「{STATUS_NAMES[target]}」{extra}。"
            out.append({"key": key, "label": label, "tells": tells})
    return out


def _amount(value: str, field: str, errors: dict[str, str]) -> int:
    try:
        fen = yuan_to_fen(value)
    except ValueError:
        errors[field] = "请输入金额（元），最多两位小数"
        return 0
    if fen <= 0:
        errors[field] = "金额须大于0"
    return fen


def _rate_bp(value: str, errors: dict[str, str]) -> int:
    try:
        pct = Decimal(value.strip())
    except InvalidOperation:
        pct = Decimal(-1)
    if not pct.is_finite() or pct < 0 or pct > 36 or pct != pct.quantize(Decimal("0.01")):
        errors["rate_pct"] = "请输入年利率（%），如 4.35，最多两位小数"
        return 0
    return int(pct * 100)


def _term(value: str, errors: dict[str, str]) -> int:
    if not value.strip().isdigit() or not 1 <= int(value.strip()) <= 360:
        errors["term_months"] = "请输入1至360之间的整数月数"
        return 0
    return int(value.strip())


def _text(model: Any, field: str, value: str, message: str, errors: dict[str, str]) -> str:
    try:
        return str(getattr(model.model_validate({field: value}), field))
    except ValueError:
        errors[field] = message
        return ""


def _data(key: str, form: dict[str, str]) -> dict[str, Any]:
    """The service arguments of an action from its form fields (FieldErrors when unreadable)."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    if key == "request-info":
        data["text"] = _text(InfoRequest, "text", form["text"], "请填写补充要求（2至500字）", errors)
    elif key == "reject":
        data["reason"] = _text(Rejection, "reason", form["reason"], "请填写拒绝原因（2至300字）", errors)
    elif key == "approve":
        data["amount_fen"] = _amount(form["amount_yuan"], "amount_yuan", errors)
        data["rate_bp"] = _rate_bp(form["rate_pct"], errors)
        data["term_months"] = _term(form["term_months"], errors)
    elif key == "disburse":
        data["amount_fen"] = _amount(form["disburse_yuan"], "disburse_yuan", errors)
    if errors:
        raise FieldErrors(errors)
    return data


def _service_errors(e: AppError) -> dict[str, str]:
    """A service refusal as a message next to the field it is about (else at the top)."""
    extra = e.extra
    if isinstance(e, AmountOutOfRange):
        field = "amount_yuan" if "min_amount_fen" in extra else "disburse_yuan"
        if "min_amount_fen" in extra:
            rng = f"（{fen_to_yuan(extra['min_amount_fen'])}至{fen_to_yuan(extra['max_amount_fen'])}元）"
        elif extra.get("approved_amount_fen") is not None:
            rng = f"（批准金额{fen_to_yuan(extra['approved_amount_fen'])}元）"
        else:
            rng = ""
        return {field: e.detail + rng}
    if isinstance(e, RateOutOfRange):
        return {
            "rate_pct": f"{e.detail}（{extra['min_rate_bp'] / 100:.2f}%至{extra['max_rate_bp'] / 100:.2f}%）"
        }
    if isinstance(e, TermOutOfRange):
        return {"term_months": f"{e.detail}（{extra['min_term_months']}至{extra['max_term_months']}个月）"}
    return {"_": e.detail}


async def _page(
    request: Request,
    session: SessionDep,
    who: Principal,
    app: Application,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    open_action: str = "",
    done: str = "",
) -> HTMLResponse:
    view = await officer_view(session, who, app)
    done_label = ACTIONS[done][1] if done in ACTIONS else ""
    return render(
        _env,
        "application.html",
        request,
        who,
        status_code=422 if errors else 200,
        app=view,
        actions=_available(view.status),
        errors=errors or {},
        values=values or {},
        open_action=open_action,
        done_label=done_label,
        done_status=STATUS_NAMES[Status(view.status)] if done_label else "",
        base=BASE,
    )


@router.get("/", response_class=HTMLResponse)
async def queue(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    status: Annotated[str, Query()] = "",
    cursor: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """The loan queue of the officer's institution, newest first, filterable by status."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    wanted = status if status in {s.value for s in Status} else None
    rows, total, next_cursor = await review.officer_list(
        session, officer=who, status=wanted, cursor=cursor, offset=0, limit=PAGE_SIZE
    )
    items = await application_views(session, rows)
    more = f"{BASE}/?{urlencode({'status': wanted or '', 'cursor': next_cursor})}" if next_cursor else ""
    return render(
        _env, "queue.html", request, who, items=items, total=total, status=wanted or "", more=more, base=BASE
    )


@router.get("/applications/{application_id}", response_class=HTMLResponse)
async def application(
    request: Request,
    application_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    done: Annotated[str, Query()] = "",
) -> HTMLResponse:
    """One application with the applicant's consented data and the actions its state allows."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    try:
        app = await review.officer_application(session, officer=who, application_id=application_id)
    except ApplicationNotFound:
        return forbidden(request, who, ROLE, message=NOT_OURS) or HTMLResponse(status_code=403)
    return await _page(request, session, who, app, done=done)


@router.post("/applications/{application_id}/{action}", response_class=HTMLResponse)
async def act(
    request: Request,
    application_id: str,
    action: str,
    who: WorkbenchStaff,
    session: SessionDep,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
    text: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    amount_yuan: Annotated[str, Form()] = "",
    rate_pct: Annotated[str, Form()] = "",
    term_months: Annotated[str, Form()] = "",
    disburse_yuan: Annotated[str, Form()] = "",
) -> Response:
    """An action's form: done once per idempotency key, then back to the application page."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    try:
        app = await review.officer_application(session, officer=who, application_id=application_id)
    except ApplicationNotFound:
        return forbidden(request, who, ROLE, message=NOT_OURS) or HTMLResponse(status_code=403)
    form = {
        "text": text,
        "reason": reason,
        "amount_yuan": amount_yuan,
        "rate_pct": rate_pct,
        "term_months": term_months,
        "disburse_yuan": disburse_yuan,
    }
    if action not in ACTIONS:
        return await _page(request, session, who, app, errors={"_": "未知的操作"})

    async def run() -> str:
        data = _data(action, form)
        async with savepoint(session):
            await review.officer_action(
                session, officer=who, application_id=application_id, action=ACTIONS[action][0], **data
            )
        return f"{BASE}/applications/{application_id}?{urlencode({'done': action})}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _page(request, session, who, app, errors=e.errors, values=form, open_action=action)
    except AppError as e:
        await session.refresh(app)
        return await _page(
            request, session, who, app, errors=_service_errors(e), values=form, open_action=action
        )
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})
