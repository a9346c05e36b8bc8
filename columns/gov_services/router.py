"""HTTP API of the government services column, mounted at ``/api/v1/columns/gov_services``."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, Response, UploadFile

from app_api.core.clock import CHINA_TZ, china_today
from app_api.core.db import SessionDep, utcnow
from app_api.core.errors import Forbidden, ValidationFailed
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import Admin, CurrentAccount, Finance, public
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub.access_log import Actor, record_read
from columns.gov_services import (
    applications,
    catalogue_io,
    catalogue_store,
    eligibility,
    fee_payments,
    instant,
    lifecycle,
    rating,
    review,
    supervision,
    workdays,
)
from columns.gov_services import (
    prefill as prefilling,
)
from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.config import get_config
from columns.gov_services.dependencies import OwnedApplication, ReviewableApplication, Reviewer, StaffOrAdmin
from columns.gov_services.errors import UploadTooLarge
from columns.gov_services.models import AWAITING_PAYMENT, STATUS_NAMES, SUPPLEMENT, Application, Event
from columns.gov_services.router_life_events import router as life_events_router
from columns.gov_services.schemas import (
    AnswerIn,
    ApplicationCreate,
    ApplicationOut,
    ApplicationsOut,
    ConditionCheckOut,
    DecisionIn,
    DepartmentRatingsOut,
    DepartmentsOut,
    EligibilityOut,
    EventOut,
    FeePayIn,
    FeePaymentOut,
    FeePayStarted,
    FieldsIn,
    FinanceDepartmentOut,
    FinanceFeeOut,
    FinanceFeesOut,
    FollowUpsOut,
    FormOut,
    ImportOut,
    ItemGuideOut,
    ItemRatingsOut,
    ItemVersionOut,
    ManualConditionOut,
    OneTapIn,
    OverdueListOut,
    PrefillIn,
    PrefillPreviewOut,
    QueueOut,
    RatingIn,
    RatingOut,
    RatingsSummaryOut,
    RejectIn,
    RevokeIn,
    RuleOutcomeOut,
    SearchHitOut,
    SearchOut,
    SeedOut,
    SubmitIn,
    SupervisionFiguresOut,
    SupplementIn,
    UploadOut,
    WithdrawIn,
)
from columns.gov_services.workbench import router as workbench_router

router = APIRouter(tags=["gov_services"])
router.include_router(life_events_router)
# The reviewers' and supervisors' workbench screens (HTML, console login).
router.include_router(workbench_router)


def _out(app: Application, **extra: Any) -> ApplicationOut:
    elapsed = None
    if app.submitted_at is not None:
        elapsed = round(
            workdays.elapsed_working_days(
                app.submitted_at, app.decided_at or utcnow(), pauses=lifecycle.pauses_of(app)
            ),
            2,
        )
    return ApplicationOut(
        id=app.id,
        number=app.number,
        item_code=app.item_code,
        item_name=app.item_name,
        item_version=app.item_version,
        department=app.department,
        status=app.status,
        status_name=STATUS_NAMES[app.status],
        delivery=app.delivery,
        limit_days=app.limit_days,
        due_at=app.due_at,
        elapsed_days=elapsed,
        paused=app.status == SUPPLEMENT or (app.status == AWAITING_PAYMENT and app.accepted_at is not None),
        decision_reason=app.decision_reason,
        result_cert_no=app.result_cert_no,
        tracking_no=app.tracking_no,
        created_at=app.created_at,
        submitted_at=app.submitted_at,
        decided_at=app.decided_at,
        conditions=[RuleOutcomeOut.model_validate(r) for r in app.rule_results],
        instant=app.instant,
        instant_sampled=app.instant_sampled,
        revoked_at=app.revoked_at,
        fee_fen=app.fee_fen,
        fee_charge_at=app.fee_charge_at,
        fee_due_at=app.fee_due_at,
        fee_paid=app.fee_order_id is not None,
        **extra,
    )


async def _full(session: SessionDep, app: Application, *, fresh: list[Event] | None = None) -> ApplicationOut:
    """The application with its timeline, uploads and fee payments. ``fresh``: the timeline of an
    application this request created (so no uploads or fee payments yet): nothing read back."""
    item = await lifecycle.version_of(session, app)
    uploads = [] if fresh is not None else await applications.uploads_of(session, app)
    if fresh is not None:
        events = sorted(fresh, key=lambda e: (e.at, e.id))
    else:
        events = await lifecycle.timeline(session, app)
    fees = [] if fresh is not None else await fee_payments.fee_payments_of(session, app)
    return _out(
        app,
        fee_payments=[FeePaymentOut.model_validate(f, from_attributes=True) for f in fees],
        form=FormOut.model_validate(lifecycle.form_view(app)),
        uploads=[UploadOut.model_validate(u, from_attributes=True) for u in uploads],
        timeline=[EventOut.model_validate(e, from_attributes=True) for e in events],
        missing_materials=applications.missing_of(app, item, {u.material for u in uploads}),
    )


# ---------------------------------------------------------------- catalogue (public)


@router.get("/items", dependencies=[Depends(public)])
async def search_items(
    session: SessionDep,
    q: Annotated[str, Query(max_length=100)] = "",
    department: str | None = None,
    item_type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SearchOut:
    """Fuzzy search of service items: names, everyday words, pinyin initials, typos."""
    index, items = await catalogue_store.catalogue_snapshot(session)
    hits = index.search(q, department=department, item_type=item_type, limit=limit)
    return SearchOut(
        query=q,
        items=[
            SearchHitOut(
                code=h.code,
                name=h.name,
                score=h.score,
                matched=h.matched,
                department=items[h.code].department,
                item_type=items[h.code].item_type,
                fully_online=items[h.code].fully_online,
                promised_days=items[h.code].promised_days,
            )
            for h in hits
        ],
    )


@router.get("/items/{code}", dependencies=[Depends(public)])
async def item_detail(code: str, session: SessionDep) -> ItemGuideOut:
    """The full guide of an item (办事指南), current version."""
    row, item = await catalogue_store.get_item(session, code=code)
    dept = await catalogue_store.department_named(session, item.department)
    return ItemGuideOut.model_validate(
        {
            "version": row.version,
            "fully_online": item.fully_online,
            "department_info": dept.model_dump(exclude={"id"}) if dept else None,
            **item.model_dump(mode="json"),
        }
    )


@router.get("/items/{code}/prefill", dependencies=[Depends(public)])
async def prefill_preview(code: str, session: SessionDep) -> PrefillPreviewOut:
    """What one-tap application would fill from the records, per consent group."""
    _, item = await catalogue_store.get_item(session, code=code)
    return PrefillPreviewOut.model_validate({"code": code, "groups": prefilling.prefill_preview(item)})


@router.get("/items/{code}/eligibility")
async def item_eligibility(
    code: str,
    principal: CurrentAccount,
    session: SessionDep,
    application_id: Annotated[str | None, Query(max_length=32, title="申请编号")] = None,
) -> EligibilityOut:
    """Which of the item's conditions you meet and why, before submitting: with ``application_id``
    from that draft's prefilled records and e-certificates, without it from your verified ID number."""
    if application_id:
        app = await applications.owned_application(session, app_id=application_id, principal=principal)
        if app.item_code != code:
            raise ValidationFailed("该申请不是这个事项的申请", application_id=application_id)
        item = await lifecycle.version_of(session, app)
        checked = await eligibility.for_application(session, app=app, item=item)
    else:
        _, item = await catalogue_store.get_item(session, code=code)
        checked = await eligibility.for_account(session, account_id=principal.id, item=item)
    return EligibilityOut(
        code=code,
        application_id=application_id,
        can_submit=not checked.blocking,
        instant_possible=item.instant_approval and checked.fully_met,
        conditions=[ConditionCheckOut.model_validate(asdict(r)) for r in checked.results],
        manual=[
            ManualConditionOut(condition=n, text=text, reason="需人工审核") for n, text in checked.manual
        ],
        blocking=[f"{r.explain}：{r.reason}" for r in checked.blocking],
        warnings=[f"{r.explain}：{r.reason}" for r in checked.warnings],
    )


@router.get("/departments", dependencies=[Depends(public)])
async def departments(session: SessionDep) -> DepartmentsOut:
    """Departments with their window address and phones."""
    rows = await catalogue_store.departments(session)
    return DepartmentsOut.model_validate({"departments": [d.model_dump(exclude={"id"}) for d in rows]})


# ---------------------------------------------------------------- catalogue (admin)


@router.post("/admin/catalogue/import")
async def import_catalogue(
    admin: Admin, session: SessionDep, file: Annotated[UploadFile, File()]
) -> ImportOut:
    """Import items from XLSX or CSV: all rows or none, with row-level errors."""
    data = await file.read(catalogue_io.MAX_FILE_BYTES + 1)
    if len(data) > catalogue_io.MAX_FILE_BYTES:
        raise UploadTooLarge("目录文件不能超过 20MB")
    counts = await catalogue_store.import_catalogue_file(
        session, data=data, filename=file.filename or "", actor_id=admin.id
    )
    return ImportOut.model_validate({"imported": counts})


@router.get("/admin/catalogue/export")
async def export_catalogue(
    admin: Admin, session: SessionDep, format: Literal["xlsx", "csv"] = "xlsx"
) -> Response:
    """The current catalogue as a spreadsheet."""
    items = await catalogue_store.current_items(session)
    if format == "csv":
        body, media = catalogue_io.write_csv(items), "text/csv; charset=utf-8"
    else:
        body = catalogue_io.write_xlsx(items)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(
        body, media_type=media, headers={"content-disposition": f'attachment; filename="catalogue.{format}"'}
    )


@router.put("/admin/items/{code}")
async def edit_item(code: str, body: CatalogueItem, admin: Admin, session: SessionDep) -> ItemVersionOut:
    """Change an item's guide: a new version; filed applications keep theirs."""
    if body.code != code:
        raise ValidationFailed("事项编码不能修改", item_code=code)
    item = await catalogue_store.edit_item(session, data=body, actor_id=admin.id)
    return ItemVersionOut(code=item.code, version=item.version)


@router.post("/admin/catalogue/seed")
async def seed_catalogue(admin: Admin, session: SessionDep) -> SeedOut:
    """Load the shipped departments and items (idempotent)."""
    return SeedOut(result=await catalogue_store.seed(session))


# ---------------------------------------------------------------- applications (resident)


@router.post("/applications", status_code=201)
async def create_application(
    body: ApplicationCreate, principal: CurrentAccount, session: SessionDep, response: Response
) -> ApplicationOut:
    """Start an application (draft); the same client key returns the same application."""
    app, created = await applications.create_application(
        session, principal=principal, item_code=body.item_code, client_key=body.client_key
    )
    if not created:
        response.status_code = 200
    return await _full(session, app)


@router.post("/applications/one-tap", status_code=201)
async def one_tap(
    body: OneTapIn, principal: CurrentAccount, session: SessionDep, response: Response
) -> ApplicationOut:
    """One-tap application (一键申报) in one request: the draft, the consents and the records they
    allow, and the submission. 201 with ``status`` submitted (or awaiting payment, or accepted when
    approved by the rules); 201 with ``status`` draft when materials are missing
    (``missing_materials``) or a condition is unmet (``conditions``), to complete step by step; 200
    with the application the same ``client_key`` already gave."""
    with lifecycle.keeping_events(session) as written:
        app, created = await applications.one_tap(
            session,
            principal=principal,
            item_code=body.item_code,
            client_key=body.client_key,
            groups=body.groups,
            delivery=body.delivery,
            address=body.address.model_dump() if body.address else None,
        )
    if not created:
        response.status_code = 200
    return await _full(session, app, fresh=written if created else None)


@router.get("/applications")
async def list_my_applications(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> ApplicationsOut:
    """This resident's applications, newest first; page on with ``cursor`` = the previous ``next_cursor``."""
    apps, next_cursor = await applications.my_applications_page(
        session, account_id=principal.id, cursor=cursor, limit=limit
    )
    return ApplicationsOut(applications=[_out(a) for a in apps], next_cursor=next_cursor)


@router.get("/applications/{app_id}")
async def get_application(app: OwnedApplication, session: SessionDep) -> ApplicationOut:
    """One of this resident's applications, with its timeline."""
    return await _full(session, app)


@router.post("/applications/{app_id}/prefill")
async def prefill(
    body: PrefillIn, app: OwnedApplication, principal: CurrentAccount, session: SessionDep
) -> FormOut:
    """Consent per group of fields and fill them from the data center."""
    applications.not_left_to_bundle(app)
    return FormOut.model_validate(
        await prefilling.prefill(session, app=app, principal=principal, groups=body.groups)
    )


@router.post("/applications/{app_id}/uploads", status_code=201)
async def upload_material(
    app: OwnedApplication,
    principal: CurrentAccount,
    session: SessionDep,
    material: Annotated[str, Form(max_length=100)],
    file: Annotated[UploadFile, File()],
) -> UploadOut:
    """Attach a material (PDF, JPEG, PNG or OFD; checked by content)."""
    applications.not_left_to_bundle(app)
    limit = get_config().upload_max_bytes
    data = await file.read(limit + 1)
    upload = await applications.add_upload(
        session,
        app=app,
        principal=principal,
        material=material,
        filename=file.filename or "",
        content_type=file.content_type,
        data=data,
    )
    return UploadOut.model_validate(upload, from_attributes=True)


@router.post("/applications/{app_id}/submit")
async def submit(
    body: SubmitIn, app: OwnedApplication, principal: CurrentAccount, session: SessionDep
) -> ApplicationOut:
    """Submit; submitting again changes nothing."""
    applications.not_left_to_bundle(app)
    done = await applications.submit(
        session,
        app_id=app.id,
        principal=principal,
        delivery=body.delivery,
        address=body.address.model_dump() if body.address else None,
    )
    return await _full(session, done)


@router.put("/applications/{app_id}/fields")
async def fill_fields(
    body: FieldsIn, app: OwnedApplication, principal: CurrentAccount, session: SessionDep
) -> ApplicationOut:
    """Fill fields the records do not hold (e.g. what the item's fee or conditions read); draft only."""
    applications.not_left_to_bundle(app)
    done = await applications.fill_fields(session, app_id=app.id, principal=principal, fields=body.fields)
    return await _full(session, done)


@router.post("/applications/{app_id}/fee/pay", status_code=201)
async def pay_fee(
    body: FeePayIn, request: Request, app: OwnedApplication, session: SessionDep
) -> FeePayStarted:
    """Pay the application's fee (while it awaits payment); the client hands ``client_params`` to the
    wallet. Each call opens a new order; a second payment of one application is refunded."""
    locked = await session.get(Application, app.id, with_for_update=True, populate_existing=True)
    assert locked is not None
    fee, params = await fee_payments.start(
        session,
        app=locked,
        provider=body.provider,
        channel=body.channel,
        payer_id=body.payer_id,
        client_ip=request.client.host if request.client else "127.0.0.1",
    )
    return FeePayStarted(
        fee_payment_id=fee.id,
        order_id=fee.order_id,
        out_trade_no=fee.out_trade_no,
        amount_fen=fee.amount_fen,
        fee_due_at=locked.fee_due_at,
        client_params=params,
    )


@router.post("/applications/{app_id}/withdraw")
async def withdraw(
    body: WithdrawIn, app: OwnedApplication, principal: CurrentAccount, session: SessionDep
) -> ApplicationOut:
    """Withdraw an application not decided yet (撤回); a paid fee is refunded automatically."""
    done = await applications.withdraw(session, app_id=app.id, principal=principal, reason=body.reason)
    return await _full(session, done)


@router.post("/applications/{app_id}/supplement")
async def supply(app: OwnedApplication, principal: CurrentAccount, session: SessionDep) -> ApplicationOut:
    """Tell the department the requested materials are supplied: the clock runs again."""
    return await _full(
        session, await applications.supply_supplement(session, app_id=app.id, principal=principal)
    )


@router.post("/applications/{app_id}/rating", status_code=201)
async def rate(
    body: RatingIn, app: OwnedApplication, principal: CurrentAccount, session: SessionDep
) -> RatingOut:
    """Rate a completed application (好差评); 1-2 stars open a follow-up."""
    r = await rating.rate(session, app=app, principal=principal, score=body.score, text=body.text)
    return RatingOut.model_validate(r, from_attributes=True)


# ---------------------------------------------------------------- review (department staff)


@router.get("/review/queue")
async def review_queue(principal: Reviewer, session: SessionDep, status: str | None = None) -> QueueOut:
    """Open applications of the reviewer's department, most urgent first."""
    apps = await review.queue(session, principal=principal, status=status)
    return QueueOut(department=principal.department, applications=[_out(a) for a in apps])


@router.get("/review/applications/{app_id}")
async def review_detail(
    app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """An application of the reviewer's department, with form, materials and timeline (the read is
    in the applicant's "who read my data", naming the department)."""
    await record_read(
        session,
        actor=Actor.of(principal, subject_account_id=app.applicant_id),
        subject_account_id=app.applicant_id,
        record_type="application",
        purpose="gov_services.review",
        application_ref=app.number,
    )
    return await _full(session, app)


@router.post("/review/applications/{app_id}/accept")
async def accept(app: ReviewableApplication, principal: Reviewer, session: SessionDep) -> ApplicationOut:
    """受理."""
    return _out(await review.accept(session, app=app, principal=principal))


@router.post("/review/applications/{app_id}/supplement")
async def request_supplement(
    body: SupplementIn, app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """Ask the resident for a supplement (补正); the clock pauses."""
    return _out(
        await review.request_supplement(
            session, app=app, principal=principal, reason=body.reason, materials=body.materials
        )
    )


@router.post("/review/applications/{app_id}/approve")
async def approve(
    body: DecisionIn, app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """Approve: the result becomes an e-certificate and/or a paper certificate posted for free."""
    return _out(await review.approve(session, app=app, principal=principal, note=body.note))


@router.post("/review/applications/{app_id}/reject")
async def reject(
    body: RejectIn, app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """Reject with a reason the resident sees."""
    return _out(await review.reject(session, app=app, principal=principal, reason=body.reason))


@router.post("/review/applications/{app_id}/instant-confirm")
async def confirm_instant(
    body: DecisionIn, app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """After-the-fact review of an instant approval (秒批): it stands."""
    return _out(await instant.confirm(session, app=app, principal=principal, note=body.note))


@router.post("/review/applications/{app_id}/revoke")
async def revoke_instant(
    body: RevokeIn, app: ReviewableApplication, principal: Reviewer, session: SessionDep
) -> ApplicationOut:
    """Revoke an instant approval (秒批) within the window, with a reason the resident sees."""
    return _out(await instant.revoke(session, app=app, principal=principal, reason=body.reason))


@router.get("/review/follow-ups")
async def follow_ups(principal: Reviewer, session: SessionDep) -> FollowUpsOut:
    """Ratings of 1-2 stars of the reviewer's department still awaiting an answer."""
    rows = await rating.open_follow_ups(session, department=principal.department or "")
    return FollowUpsOut(ratings=[RatingOut.model_validate(r, from_attributes=True) for r in rows])


@router.post("/review/ratings/{rating_id}/answer")
async def answer(rating_id: str, body: AnswerIn, principal: Reviewer, session: SessionDep) -> RatingOut:
    """Answer a bad rating's follow-up (回访)."""
    r = await rating.answer_follow_up(session, rating_id=rating_id, principal=principal, answer=body.answer)
    return RatingOut.model_validate(r, from_attributes=True)


# ---------------------------------------------------------------- supervision and figures


def _scope(principal: Principal, department: str | None) -> str | None:
    """Admins see every department; supervisors and reviewers only their own."""
    if principal.has("admin"):
        return department
    own = principal.supervisor_of or principal.department
    if department and department != own:
        raise Forbidden("只能查看本部门的监察数据")
    return own


@router.get("/supervision/departments")
async def supervision_figures(
    principal: StaffOrAdmin,
    session: SessionDep,
    department: str | None = None,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> SupervisionFiguresOut:
    """Per department over the last ``days``: on-time and same-day rates, average days, open, overdue."""
    since = utcnow() - dt.timedelta(days=days)
    figures = await supervision.department_figures(
        session, department=_scope(principal, department), since=since
    )
    year = workdays.local_date(utcnow()).year
    # Without the State Council's notice for a year only weekends are known: say so, do not guess.
    calendar_known = workdays.default_calendar().knows(year)
    return SupervisionFiguresOut.model_validate(
        {"days": days, "calendar_year": year, "calendar_known": calendar_known, "departments": figures}
    )


@router.get("/supervision/overdue")
async def supervision_overdue(
    principal: StaffOrAdmin, session: SessionDep, department: str | None = None
) -> OverdueListOut:
    """Open applications past their time limit."""
    found = await supervision.overdue(session, department=_scope(principal, department))
    return OverdueListOut.model_validate({"overdue": found})


@router.get("/ratings/summary")
async def ratings_summary(
    principal: StaffOrAdmin, session: SessionDep, by: Literal["department", "item"] = "department"
) -> RatingsSummaryOut:
    """好差评 figures per department or per item."""
    if by == "department":
        rows = await rating.rating_figures(session, by="department")
        return RatingsSummaryOut(by=by, figures=[DepartmentRatingsOut.model_validate(f) for f in rows])
    rows = await rating.rating_figures(session, by="item_code")
    return RatingsSummaryOut(by=by, figures=[ItemRatingsOut.model_validate(f) for f in rows])


# ---------------------------------------------------------------- fees (finance)


@router.get("/finance/fees")
async def finance_fees(
    principal: Finance,
    session: SessionDep,
    since: dt.date | None = None,
    until: dt.date | None = None,
    department: Annotated[str | None, Query(max_length=60)] = None,
    status: Literal["open", "paid", "refunded"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> FinanceFeesOut:
    """Fee payments ordered between two China dates (inclusive; default today), each with the
    department it is collected for (the ledger's order says only ``gov_services.fee`` and the
    application id), and per-department totals over the whole period of fees kept and refunded."""
    first = since or china_today()
    last = until or first
    if last < first:
        raise ValidationFailed("结束日期不能早于开始日期", since=first.isoformat(), until=last.isoformat())
    start = dt.datetime.combine(first, dt.time(), tzinfo=CHINA_TZ)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=CHINA_TZ)
    rows = await fee_payments.finance_listing(
        session, department=department, since=start, until=end, status=status, limit=limit
    )
    per: dict[str, FinanceDepartmentOut] = {}
    for dept, state, count, fen in await fee_payments.finance_totals(
        session, department=department, since=start, until=end
    ):
        d = per.setdefault(
            dept,
            FinanceDepartmentOut(department=dept, paid_count=0, paid_fen=0, refunded_count=0, refunded_fen=0),
        )
        if state == "paid":
            d.paid_count, d.paid_fen = count, fen
        elif state == "refunded":
            d.refunded_count, d.refunded_fen = count, fen
    return FinanceFeesOut(
        since=first,
        until=last,
        department=department,
        fees=[FinanceFeeOut.model_validate(f, from_attributes=True) for f in rows],
        departments=sorted(per.values(), key=lambda d: d.department),
    )
