from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Response

from app_api.core.db import SessionDep
from app_api.core.paging import MAX_LIMIT, CursorQuery, LegacyOffsetQuery, LimitQuery
from app_api.platform.access import Admin, CurrentAccount, public
from columns.loans import applications, catalogue, review, workbench
from columns.loans.dependencies import Officer, OfficerOrAdmin, StepUpApplicant
from columns.loans.schemas import (
    ApplicationCreate,
    ApplicationPublic,
    Approval,
    Disbursement,
    InfoRequest,
    InstitutionCreate,
    InstitutionPublic,
    OfficerApplication,
    OfficerPage,
    ProductCreate,
    ProductPublic,
    Rejection,
    Statistics,
    Supplement,
)
from columns.loans.statistics import statistics
from columns.loans.views import application_view, application_views, officer_view, officer_views

router = APIRouter()
NEXT_CURSOR_HEADER = {
    "X-Next-Cursor": {"description": "下一页的 cursor（没有下一页时不返回）", "schema": {"type": "string"}}
}
StatusFilter = Literal[
    "submitted", "accepted", "info_requested", "approved", "rejected", "disbursed", "withdrawn"
]


# -- anyone -----------------------------------------------------------------------------------


@router.get("/institutions", dependencies=[Depends(public)])
async def institutions(session: SessionDep) -> list[InstitutionPublic]:
    """Banks, insurers and guarantors on the marketplace."""
    return [
        InstitutionPublic.model_validate(i, from_attributes=True)
        for i in await catalogue.institutions(session)
    ]


@router.get("/products", dependencies=[Depends(public)])
async def products(
    session: SessionDep,
    applicant_type: Literal["individual", "business"] | None = None,
    institution_id: str | None = None,
) -> list[ProductPublic]:
    """Loan products: amount, term and rate ranges, who may apply, materials, data shared."""
    return [
        catalogue.product_public(p, i)
        for p, i in await catalogue.products(
            session, applicant_type=applicant_type, institution_id=institution_id
        )
    ]


@router.get("/products/{product_id}", dependencies=[Depends(public)])
async def product(product_id: str, session: SessionDep) -> ProductPublic:
    """One product."""
    return catalogue.product_public(*await catalogue.product(session, product_id))


@router.get("/statistics/summary", dependencies=[Depends(public)])
async def public_statistics(session: SessionDep) -> Statistics:
    """Marketplace totals (applicants, applications, approvals, disbursements)."""
    figures = await statistics(session)
    return figures.model_copy(update={"institutions": []})


# -- residents and businesses -------------------------------------------------------------------


@router.post("/applications", status_code=201)
async def apply(body: ApplicationCreate, me: StepUpApplicant, session: SessionDep) -> ApplicationPublic:
    """Apply (header ``X-Step-Up-Token`` from a fresh face check; consent to share the named data)."""
    a = await applications.apply(session, account_id=me.id, data=body)
    return await application_view(session, a)


@router.get("/applications", responses={200: {"headers": NEXT_CURSOR_HEADER}})
async def my_applications(
    me: CurrentAccount,
    session: SessionDep,
    response: Response,
    cursor: CursorQuery = None,
    limit: LimitQuery = MAX_LIMIT,
) -> list[ApplicationPublic]:
    """The caller's applications, newest first.

    The body stays a plain list (older clients read it as one); the next page's cursor, when there
    is one, is in the ``X-Next-Cursor`` header.
    """
    mine, next_cursor = await applications.my_applications(
        session, account_id=me.id, cursor=cursor, limit=limit
    )
    if next_cursor:
        response.headers["X-Next-Cursor"] = next_cursor
    return await application_views(session, mine, with_events=False)


@router.get("/applications/{application_id}")
async def my_application(application_id: str, me: CurrentAccount, session: SessionDep) -> ApplicationPublic:
    """One of the caller's applications with its history."""
    a = await applications.owned_application(session, account_id=me.id, application_id=application_id)
    return await application_view(session, a)


@router.post("/applications/{application_id}/supplement")
async def supplement(
    application_id: str, body: Supplement, me: CurrentAccount, session: SessionDep
) -> ApplicationPublic:
    """Answer the institution's request for information."""
    a = await applications.resident_action(
        session, account_id=me.id, application_id=application_id, action="supplement", text=body.text
    )
    return await application_view(session, a)


@router.post("/applications/{application_id}/withdraw")
async def withdraw(application_id: str, me: CurrentAccount, session: SessionDep) -> ApplicationPublic:
    """Withdraw an application under review (the consent to share data ends with it)."""
    a = await applications.resident_action(
        session, account_id=me.id, application_id=application_id, action="withdraw"
    )
    return await application_view(session, a)


# -- officers -------------------------------------------------------------------------------------


@router.post("/officer/products", status_code=201)
async def create_product(body: ProductCreate, officer: Officer, session: SessionDep) -> ProductPublic:
    """Publish a product of the officer's institution."""
    p = await catalogue.create_product(session, officer=officer, data=body)
    return catalogue.product_public(*await catalogue.product(session, p.id))


@router.get("/officer/applications")
async def officer_applications(
    officer: Officer,
    session: SessionDep,
    status: StatusFilter | None = None,
    cursor: CursorQuery = None,
    offset: LegacyOffsetQuery = 0,
    limit: LimitQuery = 20,
) -> OfficerPage:
    """Applications to the officer's institution (no other institution's), newest first; page on
    with ``cursor``."""
    rows, total, next_cursor = await review.officer_list(
        session, officer=officer, status=status, cursor=cursor, offset=offset, limit=limit
    )
    return OfficerPage(
        items=await officer_views(session, officer, rows), total=total, next_cursor=next_cursor
    )


@router.get("/officer/applications/{application_id}")
async def officer_application(
    application_id: str, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """One application with the applicant's shared data (while the consent stands)."""
    a = await review.officer_application(session, officer=officer, application_id=application_id)
    return await officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/accept")
async def accept(application_id: str, officer: Officer, session: SessionDep) -> OfficerApplication:
    """Accept for review (受理)."""
    a = await review.officer_action(session, officer=officer, application_id=application_id, action="accept")
    return await officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/request-info")
async def request_info(
    application_id: str, body: InfoRequest, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Ask the applicant for more information."""
    a = await review.officer_action(
        session, officer=officer, application_id=application_id, action="request_info", text=body.text
    )
    return await officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/approve")
async def approve(
    application_id: str, body: Approval, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Approve with amount, annual rate (basis points) and term, within the product's ranges."""
    a = await review.officer_action(
        session, officer=officer, application_id=application_id, action="approve", **body.model_dump()
    )
    return await officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/reject")
async def reject(
    application_id: str, body: Rejection, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Reject with a reason the applicant will read."""
    a = await review.officer_action(
        session, officer=officer, application_id=application_id, action="reject", reason=body.reason
    )
    return await officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/disburse")
async def disburse(
    application_id: str, body: Disbursement, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Record the disbursement (at most the approved amount)."""
    a = await review.officer_action(
        session, officer=officer, application_id=application_id, action="disburse", amount_fen=body.amount_fen
    )
    return await officer_view(session, officer, a)


@router.get("/officer/statistics")
async def officer_statistics(who: OfficerOrAdmin, session: SessionDep) -> Statistics:
    """Figures of the officer's institution; administrators see every institution."""
    inst = None if who.has("admin") else catalogue.officer_institution(who)
    return await statistics(session, institution_id=inst)


# -- administrators ---------------------------------------------------------------------------


@router.post("/admin/institutions", status_code=201)
async def create_institution(body: InstitutionCreate, admin: Admin, session: SessionDep) -> InstitutionPublic:
    """Register an institution (its officers are staff accounts with its id)."""
    i = await catalogue.create_institution(session, data=body, actor_id=admin.id)
    return InstitutionPublic.model_validate(i, from_attributes=True)


# -- the bank officers' workbench screens (HTML, console login) --------------------------------

router.include_router(workbench.router)
