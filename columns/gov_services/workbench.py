"""The reviewers' and supervisors' screens of the staff workbench (server-rendered, ``/workbench``).

- 审核办件: the queue of the reviewer's department, most urgent first, each with its clock (working
  days used of the promised limit, yellow and red cards); one application with the applicant's form,
  materials, the conditions as checked at submission and the timeline; the actions its state allows
  (受理, 补正, 办结, 不予办理, and for a sampled instant approval 确认 / 撤销).
- 审核办件 is sortable by time left, submission time or item; the application page says where each
  prefilled field came from (population or legal-person registry, e-certificate library, the
  resident, the station's agent): :mod:`columns.gov_services.workbench_queue`.
- 事项目录 (catalogue editors): :mod:`columns.gov_services.workbench_catalogue`.
- 效能督办: the department's figures over 30 days and its overdue applications (a supervisor or
  reviewer sees their own department, an admin every department).

The screens parse the forms and show the outcome; every rule (department scope, transitions, clocks,
fees, notifying the resident) is the services' (:mod:`columns.gov_services.review`,
:mod:`columns.gov_services.instant`, :mod:`columns.gov_services.supervision`). Opening an application
is recorded in the applicant's "who read my data", as the API's reviewer read is.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app_api.core.clock import CHINA_TZ
from app_api.core.db import SessionDep, savepoint, utcnow
from app_api.core.errors import AppError
from app_api.core.money import fen_to_yuan
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub.access_log import Actor, record_read
from app_api.platform.workbench import (
    IDEM_FIELD,
    FieldErrors,
    WorkbenchStaff,
    environment,
    forbidden,
    once,
    render,
)
from columns.gov_services import applications, instant, lifecycle, rating, review, supervision
from columns.gov_services.errors import ApplicationNotFound, OutsideDepartment
from columns.gov_services.models import (
    ACCEPTED,
    STATUS_NAMES,
    SUBMITTED,
    SUPPLEMENT,
    Application,
    Upload,
)
from columns.gov_services.schemas import AnswerIn, DecisionIn, RejectIn, RevokeIn, SupplementIn
from columns.gov_services.storage import get_storage
from columns.gov_services.workbench_catalogue import router as catalogue_router
from columns.gov_services.workbench_queue import (
    DEFAULT_SORT,
    PAGE_SIZE,
    SORTS,
    field_source,
    material_source,
    sorted_queue,
)

ROLE = "reviewer"
BASE = "/api/v1/columns/gov_services/workbench"
NOT_OURS = "该办件不属于您所在的部门（或不存在），无权查看"
OVERVIEW_DAYS = 30
# Overdue applications per page of the supervision board (the CSV export has them all).
OVERDUE_PAGE_SIZE = 50

# action (URL and form) -> (button label, what the resident is told)
ACTIONS: dict[str, tuple[str, str]] = {
    "accept": ("受理", "居民将收到通知：申请已受理，并开始计算办理时限。"),
    "supplement": ("要求补正", "居民将收到补正通知，附上您填写的补正原因和需补交的材料；补正期间暂停计时。"),
    "approve": ("办结（准予办理）", "居民将收到办结通知；结果按事项生成电子证照或寄送纸质证件。"),
    "reject": ("不予办理", "居民将收到通知，附上您填写的原因；已缴费用自动退还。"),
    "instant-confirm": ("确认秒批结果", "秒批结果维持不变，抽查记录归档。"),
    "revoke": ("撤销秒批", "居民将收到撤销通知，附上您填写的原因；电子证照同时撤销，已缴费用自动退还。"),
}

_env = environment(Path(__file__).parent / "templates" / "workbench")
_env.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if t else ""
_env.filters["yuan"] = lambda fen: "" if fen is None else fen_to_yuan(int(fen))
_env.globals["status_names"] = STATUS_NAMES

router = APIRouter(prefix="/workbench", tags=["workbench"])
# The catalogue editors' screens (admins), under /workbench/catalogue.
router.include_router(catalogue_router)


def _available(app: Application) -> list[dict[str, str]]:
    """The actions the application's state allows a reviewer."""
    keys: list[str] = []
    if app.status == SUBMITTED:
        keys += ["accept", "reject"]
    elif app.status == ACCEPTED:
        keys += ["approve", "supplement", "reject"]
    elif app.status == SUPPLEMENT:
        keys += ["reject"]
    if app.instant_sampled and app.instant_reviewed_at is None and app.status in review.INSTANT_REVIEWABLE:
        keys += ["instant-confirm", "revoke"]
    return [{"key": k, "label": ACTIONS[k][0], "tells": ACTIONS[k][1]} for k in keys]


def _clock(app: Application, now: dt.datetime) -> dict[str, Any]:
    """The application's time limit as a reviewer reads it: used/limit working days and the card."""
    clocks = supervision.clocks(app, now)
    elapsed, limit = clocks.get("total", (0.0, app.limit_days))
    ratio = elapsed / limit if limit else 0.0
    level = "red" if limit and elapsed > limit else "yellow" if ratio >= 0.8 else ""
    return {
        "elapsed": f"{elapsed:.1f}",
        "limit": limit,
        "level": level,
        "level_name": supervision.LEVEL_NAMES.get(level, "正常"),
        "paused": app.status == SUPPLEMENT,
    }


def _data(action: str, form: dict[str, Any]) -> dict[str, Any]:
    """The service arguments of an action from its form fields (FieldErrors when unreadable)."""
    try:
        if action == "supplement":
            body = SupplementIn.model_validate({"reason": form["reason"], "materials": form["materials"]})
            return {"reason": body.reason, "materials": body.materials}
        if action in ("reject", "revoke"):
            model = RejectIn if action == "reject" else RevokeIn
            return {"reason": model.model_validate({"reason": form["reason"]}).reason}
        if action in ("approve", "instant-confirm"):
            return {"note": DecisionIn.model_validate({"note": form["note"] or None}).note}
    except ValidationError as e:
        field = str(e.errors()[0]["loc"][0]) if e.errors() and e.errors()[0]["loc"] else "reason"
        messages = {
            "reason": "请填写原因（居民会看到，2至500字）",
            "materials": "需补交的材料最多30项",
            "note": "办理意见最多500字",
        }
        raise FieldErrors({field: messages.get(field, "请检查填写的内容")}) from e
    return {}


async def _run(
    session: SessionDep, who: Principal, app: Application, action: str, data: dict[str, Any]
) -> None:
    if action == "accept":
        await review.accept(session, app=app, principal=who)
    elif action == "supplement":
        await review.request_supplement(session, app=app, principal=who, **data)
    elif action == "approve":
        await review.approve(session, app=app, principal=who, **data)
    elif action == "reject":
        await review.reject(session, app=app, principal=who, **data)
    elif action == "instant-confirm":
        await instant.confirm(session, app=app, principal=who, **data)
    elif action == "revoke":
        await instant.revoke(session, app=app, principal=who, **data)


async def _record_review_read(session: SessionDep, who: Principal, app: Application) -> None:
    """The reviewer's read of the application (its page or a material), in the applicant's log."""
    await record_read(
        session,
        actor=Actor.of(who, subject_account_id=app.applicant_id),
        subject_account_id=app.applicant_id,
        record_type="application",
        purpose="gov_services.review",
        application_ref=app.number,
    )


async def _ours(session: SessionDep, who: Principal, app_id: str) -> Application | None:
    try:
        return await review.reviewable(session, app_id=app_id, principal=who)
    except (ApplicationNotFound, OutsideDepartment):
        return None


async def _page(
    request: Request,
    session: SessionDep,
    who: Principal,
    app: Application,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    open_action: str = "",
    done: str = "",
) -> HTMLResponse:
    item = await lifecycle.version_of(session, app)
    values = {"reason": "", "note": "", "materials": [], **(values or {})}
    fees = []
    if app.fee_fen:
        fees.append({"amount": fen_to_yuan(app.fee_fen), "paid": app.fee_order_id is not None})
    form = lifecycle.form_view(app)
    for f in form["fields"]:
        f["source"] = field_source(app, f["key"])
    ecerts = [
        {"material": name, "ref": ref, "source": material_source(ref)} for name, ref in form["ecerts"].items()
    ]
    return render(
        _env,
        "application.html",
        request,
        who,
        status_code=422 if errors else 200,
        app=app,
        clock=_clock(app, utcnow()),
        form=form,
        ecerts=ecerts,
        uploads=await applications.uploads_of(session, app),
        missing=await applications.missing_materials(session, app, item),
        item_materials=[m.name for m in item.materials],
        timeline=await lifecycle.timeline(session, app),
        fees=fees,
        actions=_available(app),
        errors=errors or {},
        values=values,
        open_action=open_action,
        done_label=ACTIONS[done][0] if done in ACTIONS else "",
        base=BASE,
    )


@router.get("/", response_class=HTMLResponse)
async def queue(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    status: Annotated[str, Query()] = "",
    sort: Annotated[str, Query(max_length=20)] = DEFAULT_SORT,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """The open applications of the reviewer's department, most urgent first, or by submission time
    or item (``sort``)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    wanted = status if status in (SUBMITTED, ACCEPTED, SUPPLEMENT) else None
    sort = sort if sort in SORTS else DEFAULT_SORT
    apps, total = await sorted_queue(session, principal=who, status=wanted, sort=sort, page=page)
    now = utcnow()
    rows = [{"app": a, "clock": _clock(a, now)} for a in apps]
    return render(
        _env,
        "queue.html",
        request,
        who,
        rows=rows,
        department=who.department or "",
        status=wanted or "",
        sort=sort,
        sorts={k: v[0] for k, v in SORTS.items()},
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        filters={
            SUBMITTED: STATUS_NAMES[SUBMITTED],
            ACCEPTED: STATUS_NAMES[ACCEPTED],
            SUPPLEMENT: STATUS_NAMES[SUPPLEMENT],
        },
        base=BASE,
    )


@router.get("/applications/{app_id}", response_class=HTMLResponse)
async def application(
    request: Request,
    app_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    done: Annotated[str, Query()] = "",
) -> HTMLResponse:
    """One application of the reviewer's department; the read is in the applicant's access log."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    app = await _ours(session, who, app_id)
    if app is None:
        return forbidden(request, who, ROLE, message=NOT_OURS) or HTMLResponse(status_code=403)
    await _record_review_read(session, who, app)
    return await _page(request, session, who, app, done=done)


# How a material is shown: images and PDFs in the browser, OFD (no browser reads it) downloaded.
_PREVIEW = {"jpeg": "image/jpeg", "png": "image/png", "pdf": "application/pdf"}


@router.get("/applications/{app_id}/materials/{upload_id}")
async def material(
    request: Request, app_id: str, upload_id: str, who: WorkbenchStaff, session: SessionDep
) -> Response:
    """One uploaded material of an application of the reviewer's department, for the preview; the
    read is in the applicant's access log. Served inert: no sniffing, sandboxed, never cached."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    app = await _ours(session, who, app_id)
    upload = await session.get(Upload, upload_id) if app is not None else None
    if app is None or upload is None or upload.application_id != app.id:
        return forbidden(request, who, ROLE, message=NOT_OURS) or HTMLResponse(status_code=403)
    data = await get_storage().get(upload.storage_key)
    await _record_review_read(session, who, app)
    media = _PREVIEW.get(upload.kind, "application/octet-stream")
    disposition = "inline" if upload.kind in _PREVIEW else "attachment"
    headers = {
        "content-disposition": f"{disposition}; filename*=UTF-8''{quote(upload.filename)}",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
    }
    if upload.kind != "pdf":
        # Not for PDFs: Chromium refuses to show a PDF under a sandbox policy. Uploads were checked
        # by content when they came in (storage.check_upload), so a "PDF" is a PDF.
        headers["content-security-policy"] = "sandbox; default-src 'none'"
    return Response(data, media_type=media, headers=headers)


@router.post("/applications/{app_id}/{action}", response_class=HTMLResponse)
async def act(
    request: Request,
    app_id: str,
    action: str,
    who: WorkbenchStaff,
    session: SessionDep,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    materials: Annotated[list[str] | None, Form()] = None,
    note: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """An action's form: done once per idempotency key, then back to the application page."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    app = await _ours(session, who, app_id)
    if app is None:
        return forbidden(request, who, ROLE, message=NOT_OURS) or HTMLResponse(status_code=403)
    form: dict[str, Any] = {"reason": reason, "materials": materials or [], "note": note}
    if action not in ACTIONS:
        return await _page(request, session, who, app, errors={"_": "未知的操作"})

    async def run() -> str:
        data = _data(action, form)
        async with savepoint(session):
            await _run(session, who, app, action, data)
        return f"{BASE}/applications/{app_id}?{urlencode({'done': action})}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _page(request, session, who, app, errors=e.errors, values=form, open_action=action)
    except AppError as e:
        await session.refresh(app)
        return await _page(
            request, session, who, app, errors={"_": e.detail}, values=form, open_action=action
        )
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


def _scope(who: Principal, department: str) -> str | HTMLResponse | None:
    """The department a supervision page shows: an admin's choice (all by default), else one's own."""
    if who.has("admin"):
        return department or None
    own = who.supervisor_of or who.department
    if department and department != own:
        return HTMLResponse(status_code=403)
    return own


async def _supervision_data(
    session: SessionDep, scope: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = utcnow()
    since = now - dt.timedelta(days=OVERVIEW_DAYS)
    return await supervision.board(session, now=now, department=scope, since=since)


@router.get("/supervision", response_class=HTMLResponse)
async def supervision_page(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    department: Annotated[str, Query(max_length=60)] = "",
    answered: Annotated[str, Query(max_length=40)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> HTMLResponse:
    """效能督办: figures over 30 days, the overdue applications (most overdue first, a page at a time)
    and the 好差评 follow-ups waiting for an answer (with the answer form); a reviewer or supervisor
    sees their own department, an admin any (all by default)."""
    if (denied := forbidden(request, who, ROLE, "admin")) is not None:
        return denied
    scope = _scope(who, department)
    if isinstance(scope, HTMLResponse):
        denied = forbidden(request, who, ROLE, message="只能查看本部门的督办数据")
        return denied or scope
    return await _supervision(request, session, who, scope, answered=answered, page=page)


async def _supervision(
    request: Request,
    session: SessionDep,
    who: Principal,
    scope: str | None,
    *,
    answered: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    page: int = 1,
) -> HTMLResponse:
    now = utcnow()
    # The whole list is ordered (each clock is O(1)); only a page of it is rendered.
    figures, overdue, overdue_total, page = await supervision.board_page(
        session,
        now=now,
        department=scope,
        since=now - dt.timedelta(days=OVERVIEW_DAYS),
        page=page,
        page_size=OVERDUE_PAGE_SIZE,
    )
    # Follow-ups are answered by the department's own staff (the rating service checks it too).
    follow_ups = (
        await rating.open_follow_ups(session, department=who.department)
        if who.has(ROLE) and who.department and scope in (None, who.department)
        else []
    )
    return render(
        _env,
        "supervision.html",
        request,
        who,
        status_code=422 if errors else 200,
        figures=figures,
        overdue=overdue,
        overdue_total=overdue_total,
        overdue_page=page,
        overdue_pages=max(1, -(-overdue_total // OVERDUE_PAGE_SIZE)),
        follow_ups=follow_ups,
        answered=answered,
        errors=errors or {},
        values=values or {},
        scope=scope or "全部部门",
        department=scope or "",
        days=OVERVIEW_DAYS,
        base=BASE,
    )


@router.post("/ratings/{rating_id}/answer", response_class=HTMLResponse)
async def answer_follow_up(
    request: Request,
    rating_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
    answer: Annotated[str, Form(max_length=4000)] = "",
) -> Response:
    """回访: answer a 1-2 star rating of one's department; the resident is told."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    scope = who.supervisor_of or who.department

    async def run() -> str:
        try:
            text = AnswerIn.model_validate({"answer": answer}).answer
        except ValidationError as e:
            raise FieldErrors({f"answer-{rating_id}": "请填写回访答复（2至1000字）"}) from e
        async with savepoint(session):
            await rating.answer_follow_up(session, rating_id=rating_id, principal=who, answer=text)
        return f"{BASE}/supervision?{urlencode({'answered': rating_id})}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        values = {f"answer-{rating_id}": answer}
        return await _supervision(request, session, who, scope, errors=e.errors, values=values)
    except AppError as e:
        return await _supervision(request, session, who, scope, errors={"_": e.detail})
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


@router.get("/supervision.csv")
async def supervision_csv(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    department: Annotated[str, Query(max_length=60)] = "",
) -> Response:
    """The supervision figures and the overdue list as CSV (UTF-8 with BOM, so spreadsheet programs
    read the Chinese)."""
    if (denied := forbidden(request, who, ROLE, "admin")) is not None:
        return denied
    scope = _scope(who, department)
    if isinstance(scope, HTMLResponse):
        denied = forbidden(request, who, ROLE, message="只能查看本部门的督办数据")
        return denied or scope
    figures, overdue = await _supervision_data(session, scope)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["部门", "提交", "办结", "在办", "超期在办", "按时办结率", "当日办结率", "平均用时（工作日）"])
    for d in figures:
        w.writerow(
            [
                d["department"],
                d["submitted"],
                d["decided"],
                d["open"],
                d["overdue"],
                "" if d["on_time_rate"] is None else f"{d['on_time_rate'] * 100:.0f}%",
                "" if d["same_day_rate"] is None else f"{d['same_day_rate'] * 100:.0f}%",
                "" if d["average_days"] is None else f"{d['average_days']:.1f}",
            ]
        )
    w.writerow([])
    w.writerow(["超期办件编号", "事项", "部门", "状态", "已用工作日", "承诺工作日"])
    for o in overdue:
        w.writerow(
            [
                o["number"],
                o["item"],
                o["department"],
                STATUS_NAMES.get(o["status"], o["status"]),
                f"{o['elapsed_days']:.1f}",
                o["limit_days"],
            ]
        )
    name = f"效能督办-{dt.datetime.now(CHINA_TZ):%Y%m%d}.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "cache-control": "no-store",
        },
    )
