"""Applications as residents and officers see them, loaded in batches: a page of N applications
costs a fixed number of queries (products, institutions, events, consents), not N of each."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.principal import Principal
from columns.loans.applications import events_of
from columns.loans.models import Application, ApplicationEvent, Institution, Product
from columns.loans.review import applicant_data
from columns.loans.schemas import ApplicationPublic, EventPublic, OfficerApplication

M = TypeVar("M", Product, Institution)
V = TypeVar("V", bound=ApplicationPublic)


async def _by_id(session: AsyncSession, model: type[M], ids: Iterable[str]) -> dict[str, M]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = await session.exec(select(model).where(col(model.id).in_(wanted)))
    return {r.id: r for r in rows.all()}


def _view(
    cls: type[V],
    a: Application,
    p: Product | None,
    i: Institution | None,
    evs: list[ApplicationEvent],
    **extra: Any,
) -> V:
    return cls(
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
        **extra,
    )


async def _parts(
    session: AsyncSession, apps: list[Application], *, with_events: bool
) -> tuple[dict[str, Product], dict[str, Institution], dict[str, list[ApplicationEvent]]]:
    products = await _by_id(session, Product, (a.product_id for a in apps))
    institutions = await _by_id(session, Institution, (a.institution_id for a in apps))
    events = await events_of(session, [a.id for a in apps]) if with_events else {}
    return products, institutions, events


async def application_views(
    session: AsyncSession, apps: list[Application], *, with_events: bool = True
) -> list[ApplicationPublic]:
    """The applicant's view of each application (``events`` empty unless ``with_events``)."""
    products, institutions, events = await _parts(session, apps, with_events=with_events)
    return [
        _view(
            ApplicationPublic,
            a,
            products.get(a.product_id),
            institutions.get(a.institution_id),
            events.get(a.id, []),
        )
        for a in apps
    ]


async def application_view(session: AsyncSession, app: Application) -> ApplicationPublic:
    [view] = await application_views(session, [app])
    return view


async def officer_views(
    session: AsyncSession, officer: Principal, apps: list[Application]
) -> list[OfficerApplication]:
    """The officer's view of each application, with the applicant's shared data while the consent
    stands (each view of it audited)."""
    products, institutions, events = await _parts(session, apps, with_events=True)
    applicants = await applicant_data(session, officer=officer, apps=apps)
    return [
        _view(
            OfficerApplication,
            a,
            products.get(a.product_id),
            institutions.get(a.institution_id),
            events.get(a.id, []),
            applicant=applicants[a.id],
        )
        for a in apps
    ]


async def officer_view(session: AsyncSession, officer: Principal, app: Application) -> OfficerApplication:
    [view] = await officer_views(session, officer, [app])
    return view
