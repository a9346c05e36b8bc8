from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from app_api.core.db import SessionDep
from app_api.platform.access import Admin, CurrentAccount, public
from columns.loans import service
from columns.loans.dependencies import Officer, OfficerOrAdmin, StepUpApplicant
from columns.loans.models import Application, Institution, Product
from columns.loans.schemas import (
    ApplicationCreate,
    ApplicationPublic,
    Approval,
    Disbursement,
    EventPublic,
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

router = APIRouter()
StatusFilter = Literal[
    "submitted", "accepted", "info_requested", "approved", "rejected", "disbursed", "withdrawn"
]


def _product(p: Product, i: Institution) -> ProductPublic:
    return ProductPublic(
        id=p.id,
        institution_id=i.id,
        institution_name=i.name,
        institution_kind=i.kind,
        name=p.name,
        description=p.description,
        min_amount_fen=p.min_amount_fen,
        max_amount_fen=p.max_amount_fen,
        min_term_months=p.min_term_months,
        max_term_months=p.max_term_months,
        min_rate_bp=p.min_rate_bp,
        max_rate_bp=p.max_rate_bp,
        applicant_types=p.applicant_types,
        materials=p.materials,
        shared_data=p.shared_data,
        shared_data_names=[service.SCOPE_NAMES[s] for s in p.shared_data],
    )


async def _app(session: SessionDep, a: Application, *, with_events: bool = True) -> dict[str, object]:
    p = await session.get(Product, a.product_id)
    i = await session.get(Institution, a.institution_id)
    evs = await service.events(session, a) if with_events else []
    return dict(
        id=a.id,
        product_id=a.product_id,
        product_name=p.name if p else "",
        institution_name=i.name if i else "",
        applicant_type=a.applicant_type,
        business_name=a.business_name,
        amount_fen=a.amount_fen,
        term_months=a.term_months,
        purpose=a.purpose,
        status=a.status,
        info_request=a.info_request,
        supplement=a.supplement,
        approved_amount_fen=a.approved_amount_fen,
        approved_rate_bp=a.approved_rate_bp,
        approved_term_months=a.approved_term_months,
        reject_reason=a.reject_reason,
        disbursed_fen=a.disbursed_fen,
        disbursed_at=a.disbursed_at,
        created_at=a.created_at,
        events=[
            EventPublic(
                action=e.action, from_status=e.from_status, to_status=e.to_status, created_at=e.created_at
            )
            for e in evs
        ],
    )


async def _officer_view(session: SessionDep, officer: Officer, a: Application) -> OfficerApplication:
    return OfficerApplication(
        **await _app(session, a),  # type: ignore[arg-type]
        applicant=await service.applicant_data(session, officer=officer, app=a),
    )


# -- anyone -----------------------------------------------------------------------------------


@router.get("/institutions", dependencies=[Depends(public)])
async def institutions(session: SessionDep) -> list[InstitutionPublic]:
    """Banks, insurers and guarantors on the marketplace."""
    return [
        InstitutionPublic.model_validate(i, from_attributes=True) for i in await service.institutions(session)
    ]


@router.get("/products", dependencies=[Depends(public)])
async def products(
    session: SessionDep,
    applicant_type: Literal["individual", "business"] | None = None,
    institution_id: str | None = None,
) -> list[ProductPublic]:
    """Loan products: amount, term and rate ranges, who may apply, materials, data shared."""
    return [
        _product(p, i)
        for p, i in await service.products(
            session, applicant_type=applicant_type, institution_id=institution_id
        )
    ]


@router.get("/products/{product_id}", dependencies=[Depends(public)])
async def product(product_id: str, session: SessionDep) -> ProductPublic:
    """One product."""
    return _product(*await service.product(session, product_id))


@router.get("/statistics/summary", dependencies=[Depends(public)])
async def public_statistics(session: SessionDep) -> Statistics:
    """Marketplace totals (applicants, applications, approvals, disbursements)."""
    s = await service.statistics(session)
    return Statistics(**{**s, "institutions": []})


# -- residents and businesses -------------------------------------------------------------------


@router.post("/applications", status_code=201)
async def apply(body: ApplicationCreate, me: StepUpApplicant, session: SessionDep) -> ApplicationPublic:
    """Apply (header ``X-Step-Up-Token`` from a fresh face check; consent to share the named data)."""
    a = await service.apply(session, account_id=me.id, data=body)
    return ApplicationPublic(**await _app(session, a))  # type: ignore[arg-type]


@router.get("/applications")
async def my_applications(me: CurrentAccount, session: SessionDep) -> list[ApplicationPublic]:
    """The caller's applications, newest first."""
    return [
        ApplicationPublic(**await _app(session, a, with_events=False))  # type: ignore[arg-type]
        for a in await service.my_applications(session, account_id=me.id)
    ]


@router.get("/applications/{application_id}")
async def my_application(application_id: str, me: CurrentAccount, session: SessionDep) -> ApplicationPublic:
    """One of the caller's applications with its history."""
    a = await service.owned_application(session, account_id=me.id, application_id=application_id)
    return ApplicationPublic(**await _app(session, a))  # type: ignore[arg-type]


@router.post("/applications/{application_id}/supplement")
async def supplement(
    application_id: str, body: Supplement, me: CurrentAccount, session: SessionDep
) -> ApplicationPublic:
    """Answer the institution's request for information."""
    a = await service.resident_action(
        session, account_id=me.id, application_id=application_id, action="supplement", text=body.text
    )
    return ApplicationPublic(**await _app(session, a))  # type: ignore[arg-type]


@router.post("/applications/{application_id}/withdraw")
async def withdraw(application_id: str, me: CurrentAccount, session: SessionDep) -> ApplicationPublic:
    """Withdraw an application under review (the consent to share data ends with it)."""
    a = await service.resident_action(
        session, account_id=me.id, application_id=application_id, action="withdraw"
    )
    return ApplicationPublic(**await _app(session, a))  # type: ignore[arg-type]


# -- officers -------------------------------------------------------------------------------------


@router.post("/officer/products", status_code=201)
async def create_product(body: ProductCreate, officer: Officer, session: SessionDep) -> ProductPublic:
    """Publish a product of the officer's institution."""
    p = await service.create_product(session, officer=officer, data=body)
    return _product(*await service.product(session, p.id))


@router.get("/officer/applications")
async def officer_applications(
    officer: Officer,
    session: SessionDep,
    status: StatusFilter | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> OfficerPage:
    """Applications to the officer's institution (no other institution's)."""
    rows, total = await service.officer_list(
        session, officer=officer, status=status, offset=offset, limit=limit
    )
    return OfficerPage(items=[await _officer_view(session, officer, a) for a in rows], total=total)


@router.get("/officer/applications/{application_id}")
async def officer_application(
    application_id: str, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """One application with the applicant's shared data (while the consent stands)."""
    a = await service.officer_application(session, officer=officer, application_id=application_id)
    return await _officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/accept")
async def accept(application_id: str, officer: Officer, session: SessionDep) -> OfficerApplication:
    """Accept for review (受理)."""
    a = await service.officer_action(session, officer=officer, application_id=application_id, action="accept")
    return await _officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/request-info")
async def request_info(
    application_id: str, body: InfoRequest, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Ask the applicant for more information."""
    a = await service.officer_action(
        session, officer=officer, application_id=application_id, action="request_info", text=body.text
    )
    return await _officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/approve")
async def approve(
    application_id: str, body: Approval, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Approve with amount, annual rate (basis points) and term, within the product's ranges."""
    a = await service.officer_action(
        session, officer=officer, application_id=application_id, action="approve", **body.model_dump()
    )
    return await _officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/reject")
async def reject(
    application_id: str, body: Rejection, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Reject with a reason the applicant will read."""
    a = await service.officer_action(
        session, officer=officer, application_id=application_id, action="reject", reason=body.reason
    )
    return await _officer_view(session, officer, a)


@router.post("/officer/applications/{application_id}/disburse")
async def disburse(
    application_id: str, body: Disbursement, officer: Officer, session: SessionDep
) -> OfficerApplication:
    """Record the disbursement (at most the approved amount)."""
    a = await service.officer_action(
        session, officer=officer, application_id=application_id, action="disburse", amount_fen=body.amount_fen
    )
    return await _officer_view(session, officer, a)


@router.get("/officer/statistics")
async def officer_statistics(who: OfficerOrAdmin, session: SessionDep) -> Statistics:
    """Figures of the officer's institution; administrators see every institution."""
    inst = None if who.has("admin") else service.officer_institution(who)
    return Statistics(**await service.statistics(session, institution_id=inst))


# -- administrators ---------------------------------------------------------------------------


@router.post("/admin/institutions", status_code=201)
async def create_institution(body: InstitutionCreate, admin: Admin, session: SessionDep) -> InstitutionPublic:
    """Register an institution (its officers are staff accounts with its id)."""
    i = await service.create_institution(session, data=body, actor_id=admin.id)
    return InstitutionPublic.model_validate(i, from_attributes=True)
