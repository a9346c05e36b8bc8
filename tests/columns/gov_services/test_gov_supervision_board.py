"""The supervision board gives what it gave when it loaded every open application whole and walked
each clock day by day: figures, overdue counts and the overdue list, in the same order."""

from __future__ import annotations

import datetime as dt
import random
import secrets
from typing import Any

import httpx

from tests.columns.gov_services.conftest import API
from tests.conftest import LoginFn

DAY = dt.timedelta(days=1)


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


async def _seed(department: str, now: dt.datetime, rng: random.Random, count: int = 60) -> None:
    from sqlmodel import select

    from app_api.core.db import session_scope
    from columns.gov_services.models import Application, Item

    async with session_scope() as s:
        item = (await s.exec(select(Item).where(Item.code == "BZ-MZ-001"))).one()
        for n in range(count + 1):
            submitted = now - dt.timedelta(days=rng.uniform(0, 50), minutes=rng.randrange(1440))
            status = rng.choice(["submitted", "accepted", "supplement", "approved", "rejected"])
            limit = rng.choice([0, 1, 3, 5, 10, 20])
            if n == count:  # a same-day (即办) item filed an hour ago: 0 of 0 days used is overdue
                submitted, status, limit = now - dt.timedelta(hours=1), "submitted", 0
            pauses: list[list[Any]] = []
            if status in ("accepted", "supplement") and rng.random() < 0.6:
                p0 = submitted + dt.timedelta(hours=rng.uniform(2, 200))
                p1 = p0 + dt.timedelta(hours=rng.uniform(1, 150))
                pauses.append([_iso(p0), _iso(p1), "补正"])
                if status == "supplement":
                    pauses.append([_iso(p1 + dt.timedelta(hours=rng.uniform(1, 50))), None, "补正"])
            app = Application(
                number=f"T{secrets.token_hex(6)}{n:03d}",
                client_key=secrets.token_hex(8),
                applicant_id=secrets.token_hex(16),
                item_code=item.code,
                item_version_id=item.current_version_id,
                item_version=1,
                item_name=f"事项{n % 4}",
                department=department,
                status=status,
                limit_days=limit,
                review_limit_days=max(limit - 2, 0),
                pauses=pauses,
                submitted_at=submitted,
                accepted_at=submitted + dt.timedelta(hours=3) if status != "submitted" else None,
                # No reviewer and no staff in the department: supervise() in other tests, which
                # sees these open applications too, has nobody to notify about them.
                reviewer_id=None,
                created_at=submitted,
                updated_at=submitted,
            )
            if status in ("approved", "rejected"):
                used = rng.uniform(0, limit * 1.3 + 1)
                app.decided_at = submitted + dt.timedelta(days=used * 1.4)
                app.used_days, app.on_time, app.same_day = round(used, 3), used <= limit, used < 0.3
            s.add(app)


async def _as_before(
    department: str, now: dt.datetime, since: dt.datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The figures and overdue list as they were computed before: whole rows, ``clocks()``."""
    import sqlalchemy as sa
    from sqlmodel import col, select

    from app_api.core.db import session_scope
    from columns.gov_services.models import OPEN_STATES, Application
    from columns.gov_services.supervision import clocks

    async with session_scope() as s:
        decided = (
            await s.exec(
                select(  # type: ignore[call-overload]
                    sa.func.count(),
                    sa.func.sum(sa.case((col(Application.on_time).is_(True), 1), else_=0)),
                    sa.func.sum(sa.case((col(Application.same_day).is_(True), 1), else_=0)),
                    sa.func.avg(Application.used_days),
                ).where(
                    col(Application.decided_at).is_not(None),
                    col(Application.submitted_at) >= since,
                    Application.department == department,
                )
            )
        ).one()
        open_ = (
            await s.exec(
                select(Application).where(
                    col(Application.status).in_(list(OPEN_STATES)), Application.department == department
                )
            )
        ).all()
    n, on_time, same_day, avg = decided
    recent = [a for a in open_ if a.submitted_at is not None and a.submitted_at >= since]
    figures = [
        {
            "department": department,
            "submitted": int(n) + len(recent),
            "decided": int(n),
            "open": len(recent),
            "overdue": sum(clocks(a, now)["total"][0] >= a.limit_days for a in recent),
            "on_time_rate": round(int(on_time or 0) / int(n), 4) if n else None,
            "same_day_rate": round(int(same_day or 0) / int(n), 4) if n else None,
            "average_days": round(float(avg), 2) if avg is not None else None,
        }
    ]
    late = []
    for a in open_:
        elapsed, limit = clocks(a, now)["total"]
        if elapsed >= limit:
            late.append(
                {
                    "id": a.id,
                    "number": a.number,
                    "item": a.item_name,
                    "department": a.department,
                    "status": a.status,
                    "elapsed_days": round(elapsed, 2),
                    "limit_days": limit,
                    "reviewer_id": a.reviewer_id,
                }
            )
    return figures, sorted(late, key=lambda x: -x["elapsed_days"] / max(x["limit_days"], 1))


def _order_free(rows: list[dict[str, Any]]) -> list[tuple[float, list[str]]]:
    """The list's order by urgency, with rows of equal urgency as a set (SQL gave them in no order)."""
    groups: dict[float, list[str]] = {}
    for r in rows:
        groups.setdefault(-r["elapsed_days"] / max(r["limit_days"], 1), []).append(r["id"])
    return [(k, sorted(v)) for k, v in groups.items()]


async def test_board_figures_and_overdue_list_as_before(
    client: httpx.AsyncClient, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services import supervision

    department = f"督办测试局{secrets.token_hex(3)}"
    rng = random.Random(15)
    now = dt.datetime(2026, 11, 27, 10, 30, tzinfo=dt.UTC)
    await _seed(department, now, rng)
    since = now - 30 * DAY
    want_figures, want_late = await _as_before(department, now, since)
    assert want_late and want_figures[0]["overdue"] > 0 and want_figures[0]["decided"] > 0

    async with session_scope() as s:
        figures = await supervision.department_figures(s, now=now, department=department, since=since)
        late = await supervision.overdue(s, now=now, department=department)
        board_figures, board_late = await supervision.board(s, now=now, department=department, since=since)
        paged: list[dict[str, Any]] = []
        for page in range(1, 30):
            page_figures, rows, total, shown = await supervision.board_page(
                s, now=now, department=department, since=since, page=page, page_size=7
            )
            assert page_figures == want_figures and total == len(want_late)
            if shown < page:  # past the last page: the last one again
                assert rows == paged[-len(rows) :]
                break
            paged += rows
    assert figures == board_figures == want_figures
    assert sorted(late, key=lambda r: r["id"]) == sorted(want_late, key=lambda r: r["id"])
    assert _order_free(late) == _order_free(want_late) == _order_free(board_late)
    assert late == board_late == paged[: len(late)]


async def test_the_board_shows_the_overdue_list_a_page_at_a_time(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    import re

    from app_api.core.db import session_scope, utcnow
    from columns.gov_services import supervision

    department = f"督办分页局{secrets.token_hex(3)}"
    now = utcnow()
    await _seed(department, now, random.Random(7), count=140)
    async with session_scope() as s:
        late = await supervision.overdue(s, department=department)
    assert len(late) > 50
    admin = await login(roles=["admin"])
    shown: list[str] = []
    for page in (1, 2, 3):
        resp = await client.get(
            f"{API}/workbench/supervision", params={"department": department, "page": page}, headers=admin
        )
        assert resp.status_code == 200
        table = re.search(r'<table id="overdue">.*?</table>', resp.text, re.S)
        assert table is not None
        rows = re.findall(r'<tr data-id="([0-9a-f]+)">', table.group(0))
        assert f'<span id="overdue-total">{len(late)}</span>' in resp.text
        shown += rows
        if len(shown) >= len(late):
            assert "下一页" not in resp.text.split('id="overdue-pages"')[1]
            break
        assert len(rows) == 50 and f"page={page + 1}" in resp.text
    # Every overdue application once, most overdue first (ties in either order).
    assert sorted(shown) == sorted(r["id"] for r in late)
    urgency = {r["id"]: r["elapsed_days"] / max(r["limit_days"], 1) for r in late}
    assert [urgency[i] for i in shown] == sorted(urgency.values(), reverse=True)
    csv = await client.get(
        f"{API}/workbench/supervision.csv", params={"department": department}, headers=admin
    )
    assert csv.status_code == 200 and all(r["number"] in csv.text for r in late)
