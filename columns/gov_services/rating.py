"""Ratings (好差评): the resident's rating of a decided application, the department's follow-up
(回访) of a bad one, and the figures per department or item."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import savepoint, utcnow
from app_api.platform import notify
from app_api.platform.accounts.principal import Principal
from columns.gov_services import messages
from columns.gov_services.errors import (
    AlreadyRated,
    ApplicationNotFound,
    InvalidTransition,
    OutsideDepartment,
)
from columns.gov_services.lifecycle import record_event
from columns.gov_services.models import DECIDED_STATES, Application, Rating


async def rate(
    session: AsyncSession, *, app: Application, principal: Principal, score: int, text: str | None
) -> Rating:
    if app.status not in DECIDED_STATES:
        raise InvalidTransition("办结后才能评价")
    if (await session.exec(select(Rating).where(Rating.application_id == app.id))).first() is not None:
        raise AlreadyRated()
    r = Rating(
        application_id=app.id,
        item_code=app.item_code,
        department=app.department,
        rater_id=principal.id,
        score=score,
        text=text,
        follow_up="open" if score <= 2 else "none",
    )
    session.add(r)
    try:
        async with savepoint(session):
            await session.flush()
    except sa.exc.IntegrityError:
        raise AlreadyRated() from None
    await record_event(
        session,
        app,
        kind="rated",
        title=f"评价：{score}星",
        note=text,
        actor=principal,
        role="resident",
        data={"score": score},
    )
    if r.follow_up == "open":
        await notify.send(
            session,
            account_id=app.applicant_id,
            template=messages.FOLLOW_UP,
            params={"item": app.item_name, "department": app.department},
        )
    return r


async def answer_follow_up(
    session: AsyncSession, *, rating_id: str, principal: Principal, answer: str
) -> Rating:
    r = await session.get(Rating, rating_id, with_for_update=True)
    if r is None:
        raise ApplicationNotFound("未找到该评价")
    if principal.department != r.department:
        raise OutsideDepartment(department=r.department)
    if r.follow_up != "open":
        raise InvalidTransition("该评价无需回访或已回复")
    r.follow_up, r.answer, r.answered_by, r.answered_at = "answered", answer, principal.id, utcnow()
    session.add(r)
    await session.flush()
    app = await session.get(Application, r.application_id)
    if app is not None:
        await record_event(
            session,
            app,
            kind="follow_up_answered",
            title="部门回访",
            note=answer,
            actor=principal,
            role="reviewer",
        )
        await notify.send(
            session,
            account_id=app.applicant_id,
            template=messages.FOLLOW_UP_ANSWERED,
            params={"department": r.department, "answer": answer},
        )
    return r


async def rating_figures(
    session: AsyncSession, *, by: Literal["department", "item_code"]
) -> list[dict[str, Any]]:
    """Count, average stars, bad ratings (1-2 stars), satisfaction and open follow-ups per ``by``."""
    column = col(Rating.department) if by == "department" else col(Rating.item_code)
    rows = (
        await session.exec(
            select(  # type: ignore[call-overload]
                column,
                sa.func.count(),
                sa.func.avg(Rating.score),
                sa.func.sum(sa.case((col(Rating.score) <= 2, 1), else_=0)),
                sa.func.sum(sa.case((col(Rating.follow_up) == "open", 1), else_=0)),
            ).group_by(column)
        )
    ).all()
    return [
        {
            by: key,
            "count": int(n),
            "average": round(float(avg or 0), 2),
            "bad": int(bad or 0),
            "satisfaction": round(1 - int(bad or 0) / int(n), 4) if n else None,
            "open_follow_ups": int(open_ or 0),
        }
        for key, n, avg, bad, open_ in rows
    ]


async def open_follow_ups(session: AsyncSession, *, department: str) -> list[Rating]:
    """Ratings of 1-2 stars of ``department`` still awaiting an answer."""
    return list(
        (
            await session.exec(
                select(Rating).where(Rating.department == department, Rating.follow_up == "open")
            )
        ).all()
    )
