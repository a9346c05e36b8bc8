"""Electronic supervision (电子监察): working-day clocks on every open application.

The total clock starts at submission and pauses while a supplement is awaited; the acceptance step
has its own limit. A yellow warning goes out at 80% of a limit and a red one at 100%, each once,
to the application's reviewer (or the department's reviewers before anyone took it) and the
department's supervisors. Figures per department: on-time rate, same-day completion rate,
average working days, overdue list.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import savepoint, utcnow
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from columns.gov_services import messages, workdays
from columns.gov_services.lifecycle import pauses_of
from columns.gov_services.models import (
    ACCEPTED,
    OPEN_STATES,
    SUBMITTED,
    SUPPLEMENT,
    Application,
    Warning_,
)

log = logging.getLogger(__name__)
LEVEL_NAMES = {"yellow": "黄牌预警", "red": "红牌超期"}
STREAM_BATCH = 500


def clocks(app: Application, now: dt.datetime) -> dict[str, tuple[float, int]]:
    """Elapsed working days and limit of each running clock: ``total``, and the current step's
    (``accept`` before acceptance, ``review`` after it, paused with the total during a supplement)."""
    if app.submitted_at is None:
        return {}
    end = app.decided_at or now
    out = {
        "total": (workdays.elapsed_working_days(app.submitted_at, end, pauses=pauses_of(app)), app.limit_days)
    }
    if app.status == SUBMITTED:
        out["accept"] = (workdays.elapsed_working_days(app.submitted_at, now), app.accept_limit_days)
    elif app.status in (ACCEPTED, SUPPLEMENT) and app.accepted_at is not None and app.review_limit_days > 0:
        review = workdays.elapsed_working_days(app.accepted_at, now, pauses=pauses_of(app))
        out["review"] = (review, app.review_limit_days)
    return out


async def _recipients(session: AsyncSession, app: Application) -> list[str]:
    staff = (
        await session.exec(
            select(Account).where(
                col(Account.is_active).is_(True),
                sa.or_(
                    col(Account.department) == app.department, col(Account.supervisor_of) == app.department
                ),
            )
        )
    ).all()
    supervisors = [a.id for a in staff if a.supervisor_of == app.department]
    if app.reviewer_id:
        reviewers = [app.reviewer_id]
    else:
        reviewers = [a.id for a in staff if a.department == app.department and "reviewer" in a.roles]
    return list(dict.fromkeys(reviewers + supervisors))


async def supervise(session: AsyncSession, *, now: dt.datetime | None = None) -> list[Warning_]:
    """Issue the warnings due at ``now``; running it again issues nothing new."""
    now = now or utcnow()
    if not workdays.default_calendar().knows(workdays.local_date(now).year):
        log.warning("holiday calendar has no official schedule for %s: only weekends are skipped", now.year)
    apps = (
        await session.exec(
            select(Application).where(col(Application.status).in_([SUBMITTED, ACCEPTED, SUPPLEMENT]))
        )
    ).all()
    if not apps:
        return []
    sent = {
        (w.application_id, w.scope, w.level)
        for w in (
            await session.exec(select(Warning_).where(col(Warning_.application_id).in_([a.id for a in apps])))
        ).all()
    }
    issued: list[Warning_] = []
    for app in apps:
        for scope, (elapsed, limit) in clocks(app, now).items():
            level = workdays.clock_level(elapsed, limit)
            levels = {"green": [], "yellow": ["yellow"], "red": ["yellow", "red"]}[level]
            for lv in levels:
                if (app.id, scope, lv) in sent or (lv == "yellow" and "red" in levels):
                    continue
                w = Warning_(
                    application_id=app.id,
                    department=app.department,
                    scope=scope,
                    level=lv,
                    elapsed_days=round(elapsed, 2),
                    limit_days=limit,
                )
                try:
                    async with savepoint(session):
                        session.add(w)
                        await session.flush()
                except sa.exc.IntegrityError:
                    continue  # another worker issued it
                who = await _recipients(session, app)
                w.notified = who
                session.add(w)
                for account_id in who:
                    await notify.send(
                        session,
                        account_id=account_id,
                        template=messages.WARNING,
                        params={
                            "level": LEVEL_NAMES[lv],
                            "department": app.department,
                            "number": app.number,
                            "item": app.item_name,
                            "elapsed": f"{elapsed:.1f}",
                            "limit": limit,
                        },
                        urgent=lv == "red",
                    )
                await audit.record(
                    session,
                    action=f"gov_services.warning_{lv}",
                    subject_type="gov_services_application",
                    subject_id=app.id,
                    data={"scope": scope, "elapsed": round(elapsed, 2), "limit": limit, "notified": len(who)},
                )
                issued.append(w)
    await session.flush()
    return issued


class OpenClock(NamedTuple):
    """An open application's total clock, read from the columns the board needs (not whole rows).

    A tuple of plain values, which the garbage collector stops tracking: a board over thousands of
    open applications then leaves nothing behind that makes the next full collection come sooner.
    """

    id: str
    number: str
    item: str
    department: str
    status: str
    submitted_at: dt.datetime
    elapsed: float
    limit: int
    reviewer_id: str | None

    @property
    def overdue(self) -> bool:
        return self.elapsed >= self.limit


def _pauses(raw: list[list[Any]] | None) -> list[workdays.Pause]:
    return [
        (dt.datetime.fromisoformat(p[0]), dt.datetime.fromisoformat(p[1]) if p[1] else None)
        for p in raw or []
    ]


async def open_clocks(
    session: AsyncSession,
    *,
    now: dt.datetime,
    department: str | None = None,
    since: dt.datetime | None = None,
) -> list[OpenClock]:
    """Every open application's total clock (``clocks(app, now)["total"]``), in submission order.

    Only the clock's columns are read; each clock is the running-total calendar's O(1) answer."""
    a = Application
    q = select(  # type: ignore[call-overload]
        a.id,
        a.number,
        a.item_name,
        a.department,
        a.status,
        a.submitted_at,
        a.decided_at,
        a.pauses,
        a.limit_days,
        a.reviewer_id,
    ).where(col(a.status).in_(list(OPEN_STATES)), col(a.submitted_at).is_not(None))
    if since is not None:
        q = q.where(col(a.submitted_at) >= since)
    if department:
        q = q.where(a.department == department)
    q = q.order_by(col(a.submitted_at), col(a.id))
    out = []
    # Streamed in batches: the driver's rows (and their decoded pauses) live for one batch only.
    result = await session.stream(q)
    async for batch in result.partitions(STREAM_BATCH):
        for id_, number, item, dept, status, submitted, decided, pauses, limit, reviewer in batch:
            elapsed = workdays.elapsed_working_days(submitted, decided or now, pauses=_pauses(pauses))
            out.append(OpenClock(id_, number, item, dept, status, submitted, elapsed, limit, reviewer))
    return out


async def department_figures(
    session: AsyncSession,
    *,
    now: dt.datetime | None = None,
    department: str | None = None,
    since: dt.datetime | None = None,
    open_: list[OpenClock] | None = None,
) -> list[dict[str, Any]]:
    """Per department, over applications filed since ``since`` (default: the last 30 days).

    Decided applications aggregate in SQL from what was fixed at the decision; only open ones
    (a bounded set) have their clocks computed here (``open_`` when the caller has them already:
    :func:`open_clocks` over the same department, any ``since`` at or before this one).
    """
    now = now or utcnow()
    since = since or now - dt.timedelta(days=30)
    decided_q = (
        select(  # type: ignore[call-overload]
            Application.department,
            sa.func.count(),
            sa.func.sum(sa.case((col(Application.on_time).is_(True), 1), else_=0)),
            sa.func.sum(sa.case((col(Application.same_day).is_(True), 1), else_=0)),
            sa.func.avg(Application.used_days),
        )
        .where(col(Application.decided_at).is_not(None), col(Application.submitted_at) >= since)
        .group_by(Application.department)
    )
    if department:
        decided_q = decided_q.where(Application.department == department)
    per: dict[str, dict[str, Any]] = {}

    def row(dept: str) -> dict[str, Any]:
        return per.setdefault(
            dept,
            {
                "department": dept,
                "submitted": 0,
                "decided": 0,
                "open": 0,
                "overdue": 0,
                "on_time_rate": None,
                "same_day_rate": None,
                "average_days": None,
            },
        )

    for dept, n, on_time, same_day, avg in (await session.exec(decided_q)).all():
        f = row(dept)
        f["decided"] = int(n)
        f["submitted"] += int(n)
        f["on_time_rate"] = round(int(on_time or 0) / int(n), 4) if n else None
        f["same_day_rate"] = round(int(same_day or 0) / int(n), 4) if n else None
        f["average_days"] = round(float(avg), 2) if avg is not None else None
    if open_ is None:
        open_ = await open_clocks(session, now=now, department=department, since=since)
    for c in open_:
        if c.submitted_at < since:
            continue
        f = row(c.department)
        f["submitted"] += 1
        f["open"] += 1
        f["overdue"] += c.overdue
    return sorted(per.values(), key=lambda x: x["department"])


def _overdue_row(c: OpenClock) -> dict[str, Any]:
    return {
        "id": c.id,
        "number": c.number,
        "item": c.item,
        "department": c.department,
        "status": c.status,
        "elapsed_days": round(c.elapsed, 2),
        "limit_days": c.limit,
        "reviewer_id": c.reviewer_id,
    }


def _most_overdue_first(open_: list[OpenClock]) -> list[OpenClock]:
    """The overdue ones among ``open_``, the most overdue (rounded elapsed days over the limit) first;
    a stable sort, so equals keep ``open_``'s order."""
    return sorted((c for c in open_ if c.overdue), key=lambda c: -round(c.elapsed, 2) / max(c.limit, 1))


def overdue_list(open_: list[OpenClock]) -> list[dict[str, Any]]:
    """The overdue ones among ``open_``, the most overdue (elapsed over limit) first."""
    return [_overdue_row(c) for c in _most_overdue_first(open_)]


async def overdue(
    session: AsyncSession, *, now: dt.datetime | None = None, department: str | None = None
) -> list[dict[str, Any]]:
    now = now or utcnow()
    return overdue_list(await open_clocks(session, now=now, department=department))


async def board(
    session: AsyncSession,
    *,
    since: dt.datetime,
    now: dt.datetime | None = None,
    department: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`department_figures` since ``since`` and the whole :func:`overdue` list, each open
    application's clock computed once."""
    now = now or utcnow()
    open_ = await open_clocks(session, now=now, department=department)
    figures = await department_figures(session, now=now, department=department, since=since, open_=open_)
    return figures, overdue_list(open_)


async def board_page(
    session: AsyncSession,
    *,
    since: dt.datetime,
    page: int,
    page_size: int,
    now: dt.datetime | None = None,
    department: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, int]:
    """:func:`board` for a screen: the figures, one page of the overdue list (the page number
    bounded by the last page), how many are overdue, and the page shown."""
    now = now or utcnow()
    open_ = await open_clocks(session, now=now, department=department)
    figures = await department_figures(session, now=now, department=department, since=since, open_=open_)
    late = _most_overdue_first(open_)
    page = max(1, min(page, -(-len(late) // page_size)))
    return (
        figures,
        [_overdue_row(c) for c in late[(page - 1) * page_size : page * page_size]],
        len(late),
        page,
    )
