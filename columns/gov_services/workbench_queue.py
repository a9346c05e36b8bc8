"""The reviewer's queue as the workbench lists it: the applications :func:`review.queue` names, in the
order the reviewer picked (time left on the clock, submission time, item), and where each prefilled
field of an application came from.

The set of applications is :func:`columns.gov_services.review.queue`'s; only the order is the
screen's. The order is applied in SQL, page by page, so a page shows the next applications in that
order, not a re-sorted slice of the most urgent.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.accounts.principal import Principal
from columns.gov_services.catalogue import CONSENT_GROUPS
from columns.gov_services.models import ACCEPTED, SUBMITTED, SUPPLEMENT, Application
from columns.gov_services.review import INSTANT_REVIEWABLE

# Rows per page: a 1366x768 screen shows a few dozen rows. Each row's clock (``supervision.clocks``)
# is two look-ups in the working-day running total, some microseconds; the order is SQL's.
PAGE_SIZE = 50
# sort key -> (label, ORDER BY). Time left: the clock's due time (a paused clock's due time moves
# when it resumes); ties by submission so the order is stable.
SORTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "due": ("剩余时限（最紧迫在前）", (col(Application.due_at).asc(), col(Application.submitted_at).asc())),
    "submitted": ("提交时间（最早在前）", (col(Application.submitted_at).asc(), col(Application.id).asc())),
    "item": ("事项名称", (col(Application.item_name).asc(), col(Application.due_at).asc())),
}
DEFAULT_SORT = "due"


async def sorted_queue(
    session: AsyncSession, *, principal: Principal, status: str | None, sort: str, page: int = 1
) -> tuple[list[Application], int]:
    """One page of the reviewer's queue (the applications ``review.queue`` lists) in ``sort`` order,
    and how many the queue holds."""
    q = _queue_filter(select(Application), principal=principal, status=status)
    order = SORTS.get(sort, SORTS[DEFAULT_SORT])[1]
    rows = (await session.exec(q.order_by(*order).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).all()
    counted = _queue_filter(select(sa.func.count()), principal=principal, status=status)
    total = (await session.exec(counted)).one()
    return list(rows), int(total)


def _queue_filter(q: Any, *, principal: Principal, status: str | None) -> Any:
    q = q.select_from(Application).where(Application.department == (principal.department or ""))
    if status:
        q = q.where(Application.status == status)
    else:
        q = q.where(
            sa.or_(
                col(Application.status).in_([SUBMITTED, ACCEPTED, SUPPLEMENT]),
                sa.and_(
                    col(Application.instant_sampled).is_(True),
                    col(Application.instant_reviewed_at).is_(None),
                    col(Application.status).in_(INSTANT_REVIEWABLE),
                ),
            )
        )
    return q


# Where a form field or material came from, as the reviewer is shown it.
SOURCE_NAMES = {
    "person": "人口库（经申请人授权调取）",
    "legal_person": "法人库（经申请人授权调取）",
    "certificate": "电子证照库（经申请人授权调取）",
    "agent": "代办员现场核验后录入",
    "resident": "申请人填写",
}


def field_source(app: Application, key: str) -> str:
    """Where one form field came from. Record fields (``person.*``, ``legal_person.*``) can only be
    written by one-tap filling under the group's consent (``applications.fill_fields`` refuses them
    from the resident); without that consent on the application they were entered by the station's
    agent who checked the resident in person (``on_behalf``). Any other field the applicant typed."""
    group = key.split(".", 1)[0]
    if group in CONSENT_GROUPS and group != "certificate":
        if group in app.consents:
            return SOURCE_NAMES[group]
        return SOURCE_NAMES["agent"] if app.agent_id else "来源未记录（无授权记录）"
    return SOURCE_NAMES["agent"] if app.agent_id and key.startswith("agent.") else SOURCE_NAMES["resident"]


def material_source(ref: Any) -> str:
    """Where a material attached by reference came from: the e-certificate library, or the agent's
    in-person check of the original (``on_behalf``)."""
    if isinstance(ref, dict) and ref.get("verified_in_person"):
        return "代办员现场核验原件"
    return SOURCE_NAMES["certificate"]
