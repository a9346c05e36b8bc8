"""Marketplace figures: applicants, applications, approvals and disbursements, in total and per
institution (one institution's for its officers, every institution's for administrators)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from columns.loans.models import Application, Institution, Status
from columns.loans.schemas import InstitutionStats, Statistics


async def statistics(session: AsyncSession, *, institution_id: str | None = None) -> Statistics:
    base = select(Application)
    if institution_id:
        base = base.where(Application.institution_id == institution_id)
    sub = base.subquery()
    approved = sa.or_(sub.c.status == Status.APPROVED.value, sub.c.status == Status.DISBURSED.value)
    disbursed = sub.c.status == Status.DISBURSED.value
    row = (
        await session.exec(
            select(  # type: ignore[call-overload]
                sa.func.count(sa.distinct(sub.c.account_id)),
                sa.func.count(
                    sa.distinct(sa.case((sub.c.applicant_type == "business", sub.c.business_credit_code)))
                ),
                sa.func.count(),
                sa.func.count(sa.case((approved, 1))),
                sa.func.count(sa.case((disbursed, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((disbursed, sub.c.disbursed_fen), else_=0)), 0),
            )
        )
    ).one()
    per = (
        await session.exec(
            select(  # type: ignore[call-overload]
                sub.c.institution_id,
                Institution.name,
                sa.func.count(sa.distinct(sub.c.account_id)),
                sa.func.count(),
                sa.func.count(sa.case((approved, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((approved, sub.c.approved_amount_fen), else_=0)), 0),
                sa.func.count(sa.case((disbursed, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((disbursed, sub.c.disbursed_fen), else_=0)), 0),
            )
            .join(Institution, col(Institution.id) == sub.c.institution_id)
            .group_by(sub.c.institution_id, Institution.name)
            .order_by(Institution.name)
        )
    ).all()
    return Statistics(
        registered_applicants=int(row[0]),
        business_applicants=int(row[1]),
        applications=int(row[2]),
        approvals=int(row[3]),
        disbursements=int(row[4]),
        disbursed_fen=int(row[5]),
        institutions=[
            InstitutionStats(
                institution_id=r[0],
                institution_name=r[1],
                applicants=int(r[2]),
                applications=int(r[3]),
                approvals=int(r[4]),
                approved_fen=int(r[5]),
                disbursements=int(r[6]),
                disbursed_fen=int(r[7]),
            )
            for r in per
        ],
    )
