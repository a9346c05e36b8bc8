"""Electronic supervision: warnings at 80% and 100% to the reviewer and the supervisor, a supplement
pausing the clock, per-department figures."""

from __future__ import annotations

import datetime as dt

import httpx
from sqlmodel import select

from tests.columns.gov_services.conftest import API, Resident, make_resident, make_staff, new_application
from tests.conftest import LoginFn

ALLOWANCE = "BZ-MZ-002"  # 高龄津贴申领: 10 working days, all materials by e-certificate
DEPT = "谯城区民政局"
CERTS = (
    ("resident_id_card", "居民身份证"),
    ("household_register", "居民户口簿"),
    ("social_security_card", "社会保障卡"),
)
TZ = dt.timezone(dt.timedelta(hours=8))


def local(y: int, m: int, d: int, h: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, h, tzinfo=TZ)


async def _accepted(
    client: httpx.AsyncClient, login: LoginFn, reviewer: dict[str, str]
) -> tuple[Resident, str]:
    r = await make_resident(client, login, level=2, certs=CERTS)
    app = await new_application(client, r, ALLOWANCE)
    resp = await client.post(
        f"{API}/applications/{app['id']}/prefill", json={"groups": ["certificate"]}, headers=r.headers
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(f"{API}/applications/{app['id']}/submit", json={}, headers=r.headers)
    assert resp.status_code == 200 and resp.json()["limit_days"] == 10, resp.text
    resp = await client.post(f"{API}/review/applications/{app['id']}/accept", headers=reviewer)
    assert resp.status_code == 200, resp.text
    return r, app["id"]


async def _backdate(app_id: str, submitted: dt.datetime, pauses: list[list[object]] | None = None) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Application

    async with session_scope() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        app.submitted_at = submitted
        if pauses is not None:
            app.pauses = pauses
        s.add(app)


async def _warnings(app_id: str) -> list[tuple[str, str, list[str]]]:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Warning_

    async with session_scope() as s:
        rows = (await s.exec(select(Warning_).where(Warning_.application_id == app_id))).all()
    return sorted((w.scope, w.level, w.notified) for w in rows)


async def _supervise(now: dt.datetime) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services import supervision

    async with session_scope() as s:
        await supervision.supervise(s, now=now)


async def test_yellow_at_80_percent_and_red_at_100_to_reviewer_and_supervisor(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.notify import Notification
    from columns.gov_services import supervision

    reviewer, reviewer_id = await make_staff(client, login, department=DEPT)
    _, supervisor_id = await make_staff(client, login, department=DEPT, supervisor=True)
    r, app_id = await _accepted(client, login, reviewer)
    # Filed Monday 2 Nov 2026 at 09:00: the clock starts Tuesday; 8 working days end Thursday 12 Nov.
    await _backdate(app_id, local(2026, 11, 2, 9))

    await _supervise(local(2026, 11, 12, 23))
    assert await _warnings(app_id) == []
    await _supervise(local(2026, 11, 13, 1))
    warnings = await _warnings(app_id)
    assert [(s, lv) for s, lv, _ in warnings] == [("total", "yellow")]
    assert set(warnings[0][2]) == {reviewer_id, supervisor_id}
    await _supervise(local(2026, 11, 13, 2))  # running again sends nothing new
    assert len(await _warnings(app_id)) == 1

    # 10 working days end Monday 16 Nov (the weekend does not count).
    await _supervise(local(2026, 11, 16, 23))
    assert len(await _warnings(app_id)) == 1
    await _supervise(local(2026, 11, 17) + dt.timedelta(minutes=1))
    assert [(s, lv) for s, lv, _ in await _warnings(app_id)] == [("total", "red"), ("total", "yellow")]

    async with session_scope() as s:
        sent = (await s.exec(select(Notification).where(Notification.template == "gov.warning"))).all()
    number = await _number(app_id)
    mine = [
        n for n in sent if n.params.get("number") == number and n.account_id in (reviewer_id, supervisor_id)
    ]
    texts = [n.text for n in mine]
    assert sum("黄牌预警" in t for t in texts) == 2 and sum("红牌超期" in t for t in texts) == 2
    assert all(n.urgent for n in mine if "红牌" in n.text)
    # The resident is not told about internal warnings.
    assert r.account_id not in {n.account_id for n in sent}

    async with session_scope() as s:
        figures = await supervision.department_figures(s, now=local(2026, 11, 17, 1), department=DEPT)
        late = await supervision.overdue(s, now=local(2026, 11, 17, 1), department=DEPT)
    assert figures[0]["department"] == DEPT and figures[0]["overdue"] >= 1
    assert app_id in [x["id"] for x in late]


async def _number(app_id: str) -> str:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Application

    async with session_scope() as s:
        app = await s.get(Application, app_id)
        assert app is not None
        return app.number


async def test_supplement_pauses_the_clock(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    reviewer, _ = await make_staff(client, login, department=DEPT)
    r, app_id = await _accepted(client, login, reviewer)
    resp = await client.post(
        f"{API}/review/applications/{app_id}/supplement",
        json={
            "reason": "社会保障卡已挂失，请提供银行账户",
            "materials": ["本人社会保障卡（或本人名下银行账户）"],
        },
        headers=reviewer,
    )
    assert resp.status_code == 200, resp.text
    detail = (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
    assert detail["status"] == "supplement" and detail["paused"] and detail["due_at"] is None
    assert detail["timeline"][-1]["kind"] == "supplement_requested"
    assert "补正期间不计入办理时限" in " ".join(
        n["text"] for n in (await client.get("/api/v1/me/notifications", headers=r.headers)).json()["items"]
    )

    # As if: filed Monday 2 Nov 09:00, supplement asked Monday 9 Nov 12:00 (4.5 working days used).
    pause_start = local(2026, 11, 9, 12)
    await _backdate(app_id, local(2026, 11, 2, 9), [[pause_start.isoformat(), None, "补正"]])
    await _supervise(local(2026, 11, 30))  # long after the limit, but the clock stands still
    assert [w for w in await _warnings(app_id) if w[0] == "total"] == []
    detail = (await client.get(f"{API}/applications/{app_id}", headers=r.headers)).json()
    assert detail["elapsed_days"] == 4.5

    resp = await client.post(f"{API}/applications/{app_id}/supplement", headers=r.headers)
    assert resp.status_code == 200 and resp.json()["status"] == "accepted" and resp.json()["due_at"]
    # The resident supplied a week later, Monday 16 Nov 12:00: the clock resumes from 4.5 days.
    await _backdate(
        app_id,
        local(2026, 11, 2, 9),
        [[pause_start.isoformat(), local(2026, 11, 16, 12).isoformat(), "补正"]],
    )
    await _supervise(local(2026, 11, 18))  # 4.5 + 1.5 = 6 of 10: green (unpaused it would be 11: red)
    assert [w for w in await _warnings(app_id) if w[0] == "total"] == []
    await _supervise(local(2026, 11, 20, 12))  # 8.5 of 10: yellow
    assert [(s, lv) for s, lv, _ in await _warnings(app_id) if s == "total"] == [("total", "yellow")]

    # Supplying again when nothing is asked is refused.
    again = await client.post(f"{API}/applications/{app_id}/supplement", headers=r.headers)
    assert again.status_code == 409 and again.json()["code"] == "gov_services.invalid_state"


async def test_figures_on_time_and_same_day(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    reviewer, _ = await make_staff(client, login, department=DEPT)
    admin = await login(roles=["admin"])
    _, app_id = await _accepted(client, login, reviewer)
    resp = await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
    assert resp.status_code == 200
    figures = (
        await client.get(f"{API}/supervision/departments", params={"department": DEPT}, headers=admin)
    ).json()
    row = figures["departments"][0]
    assert row["department"] == DEPT and row["decided"] >= 1
    assert 0 < row["same_day_rate"] <= 1 and 0 < row["on_time_rate"] <= 1
    # A reviewer sees only their own department's figures.
    other, _ = await make_staff(client, login, department="谯城区公安分局")
    resp = await client.get(f"{API}/supervision/departments", params={"department": DEPT}, headers=other)
    assert resp.status_code == 403


async def test_review_step_has_its_own_limit(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Application

    reviewer, reviewer_id = await make_staff(client, login, department=DEPT)
    _, app_id = await _accepted(client, login, reviewer)
    # 高龄津贴: 受理 1 day, then 乡镇审核 5 + 县区审批 2 = a review stage of 7 working days in a total of 10.
    async with session_scope() as s:
        app = await s.get(Application, app_id)
        assert app is not None and app.review_limit_days == 7 and app.accept_limit_days == 1
        app.submitted_at = local(2026, 11, 2, 9)
        app.accepted_at = local(2026, 11, 2, 10)
        s.add(app)
    # Tuesday 3 .. Thursday 12 Nov = 8 working days: over the review stage's 7 (red), 80% of the total (yellow).
    await _supervise(local(2026, 11, 13, 1))
    found = {(s, lv) for s, lv, _ in await _warnings(app_id)}
    assert found == {("review", "red"), ("total", "yellow")}
    assert all(reviewer_id in who for _, _, who in await _warnings(app_id))


async def test_figures_count_on_time_late_and_same_day_decisions(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from tests.columns.gov_services.conftest import pdf

    dept = "亳州市司法局"
    reviewer, _ = await make_staff(client, login, department=dept)
    admin = await login(roles=["admin"])
    ids = []
    for _ in range(2):
        r = await make_resident(client, login, level=2)
        app = await new_application(client, r, "BZ-SF-001")  # 法律援助申请
        await client.post(
            f"{API}/applications/{app['id']}/prefill",
            json={"groups": ["person", "certificate"]},
            headers=r.headers,
        )
        for material in app["missing_materials"]:
            if material.startswith("《") or material == "申请人居民身份证":
                continue
            resp = await client.post(
                f"{API}/applications/{app['id']}/uploads",
                data={"material": material},
                files={"file": ("m.pdf", pdf(), "application/pdf")},
                headers=r.headers,
            )
            assert resp.status_code == 201, resp.text
        resp = await client.post(f"{API}/applications/{app['id']}/submit", json={}, headers=r.headers)
        assert resp.status_code == 200, resp.text
        ids.append(app["id"])
    # The second one was filed five weeks ago and is decided only now: late, not same day.
    await _backdate(ids[1], dt.datetime.now(TZ) - dt.timedelta(days=35))
    for app_id in ids:
        assert (
            await client.post(f"{API}/review/applications/{app_id}/accept", headers=reviewer)
        ).status_code == 200
        assert (
            await client.post(f"{API}/review/applications/{app_id}/approve", json={}, headers=reviewer)
        ).status_code == 200
    resp = await client.get(
        f"{API}/supervision/departments", params={"department": dept, "days": 90}, headers=admin
    )
    assert resp.json()["calendar_known"] is (resp.json()["calendar_year"] in (2025, 2026))
    row = resp.json()["departments"][0]
    assert row["decided"] == 2 and row["open"] == 0, resp.json()
    assert row["on_time_rate"] == 0.5 and row["same_day_rate"] == 0.5
    assert row["average_days"] > 10
    # Within the last 30 days only the recent one counts.
    resp = await client.get(f"{API}/supervision/departments", params={"department": dept}, headers=admin)
    assert resp.json()["departments"][0]["decided"] == 1
