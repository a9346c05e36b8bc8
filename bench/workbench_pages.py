"""Server time of each gov_services workbench page with 10,000 applications in the database.

The api (``app_api.wiring.main:app``, one uvicorn worker, no embedded job worker) runs on a scratch
PostgreSQL database (``BENCH_PG``, see bench/_harness.py) with the shipped catalogue and
``--applications`` applications (default 10,000) over every seeded item: ``--share`` of them (default
40%) in one department, the reviewer's, so its queue and figures are the busiest; states mixed as a
working hall has them (about a quarter open, most decided within their limit, some overdue, some
drafts), submitted over the last 60 days. One item has a second version (the history's diff).
A station agent has filed for ``AGENT_RESIDENTS`` residents (a tracking mandate each, five
applications each besides the 10,000, the newest the filing), so the agent home lists a page of
filings whose states come from the catalogue capability.

Each page is requested ``--requests`` times one after another (after ``--warmup`` requests), by a
reviewer of that department or an admin, with a bearer token; the time is the client's wall time on
loopback, which is the server's time plus the HTTP round trip (``/healthz``'s time is printed as that
floor). Goal: every page within 150 ms; the ratio printed is goal / p95 (1.00 or more meets it, as
bench/report.py reads ratios).

Run: .venv/bin/python bench/workbench_pages.py [--applications 10000] [--requests 40] [--json]
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    REDIS,
    Server,
    api_env,
    cpu_plan,
    emit,
    json_requested,
    migrate,
    running,
    scratch_database,
)

GOAL_MS = 150.0
DEPARTMENT_ITEM = "BZ-MZ-001"  # 老年人优待证, 谯城区民政局: the reviewer's department
EDITED_ITEM = "BZ-MZ-001"
WB = "/api/v1/columns/gov_services/workbench"
AGENT_HOME = "/api/v1/workbench/agent/"
AGENT_RESIDENTS = 20  # the agent home's page of filings (FILINGS_SHOWN)


def _app_row(
    rng: random.Random, item: Any, version_id: str, now: dt.datetime, n: int
) -> tuple[Any, list[Any]]:
    """One application of ``item`` in a state drawn as a working hall has them, and its timeline."""
    from columns.gov_services.lifecycle import set_form
    from columns.gov_services.models import Application, Event

    submitted = now - dt.timedelta(days=rng.uniform(0, 60), minutes=rng.uniform(0, 600))
    roll = rng.random()
    status = (
        "submitted"
        if roll < 0.12
        else "accepted"
        if roll < 0.22
        else "supplement"
        if roll < 0.26
        else "approved"
        if roll < 0.86
        else "rejected"
        if roll < 0.91
        else "draft"
    )
    limit = max(item.promised_days, 1)
    app = Application(
        number=f"{submitted:%Y%m%d}{n:08d}",
        client_key=secrets.token_hex(8),
        applicant_id=secrets.token_hex(16),
        item_code=item.code,
        item_version_id=version_id,
        item_version=1,
        item_name=item.name,
        department=item.department,
        status=status,
        consents={"person": secrets.token_hex(16), "certificate": secrets.token_hex(16)},
        ecerts={
            m.name: {"id": secrets.token_hex(8), "cert_no": f"B{n:015d}", "title": m.ecert}
            for m in item.materials
            if m.ecert
        },
        limit_days=limit,
        accept_limit_days=1,
        review_limit_days=max(limit - 2, 0),
        delivery="电子送达",
        created_at=submitted,
        updated_at=submitted,
    )
    set_form(
        app,
        {
            "person.name": "测试居民",
            "person.id_number": "341602194001010011",
            "person.gender": "男",
            "person.birth_date": "1940-01-01",
            "person.address": "安徽省亳州市谯城区魏武大道88号",
        },
    )
    events = [
        Event(application_id=app.id, kind="created", title="创建申请", actor_role="resident", at=submitted)
    ]
    if status != "draft":
        app.submitted_at = submitted
        app.due_at = submitted + dt.timedelta(days=limit * 1.4)
        events.append(
            Event(
                application_id=app.id, kind="submitted", title="提交申请", actor_role="resident", at=submitted
            )
        )
    if status in ("accepted", "supplement", "approved", "rejected"):
        app.accepted_at = submitted + dt.timedelta(hours=rng.uniform(1, 30))
        events.append(
            Event(
                application_id=app.id,
                kind="accepted",
                title="已受理",
                actor_role="reviewer",
                at=app.accepted_at,
            )
        )
    if status in ("approved", "rejected"):
        used = rng.uniform(0, limit * 1.3)
        app.decided_at = submitted + dt.timedelta(days=used * 1.4)
        app.used_days, app.on_time, app.same_day = round(used, 2), used <= limit, used < 0.3
        events.append(
            Event(application_id=app.id, kind=status, title="办结", actor_role="reviewer", at=app.decided_at)
        )
    return app, events


async def _agent_filings(
    s: Any, rng: random.Random, items: dict[str, Any], versions: dict[str, str], now: dt.datetime, n0: int
) -> tuple[str, str]:
    """A station, its agent and AGENT_RESIDENTS residents each with a tracking mandate, five
    applications and one filing by the agent; the agent's token and id."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.service import create_staff, phone_hash
    from app_api.platform.accounts.tokens import issue_pair
    from app_api.platform.agents.mandates import MANDATE_PURPOSE
    from app_api.platform.agents.models import Mandate, Station, Submission
    from app_api.platform.consent.models import Consent

    station = Station(
        code=f"BENCH-{secrets.token_hex(3)}",
        name="十八里镇王庄村便民服务站",
        city="亳州市",
        district="谯城区",
        address="亳州市谯城区十八里镇王庄村",
    )
    s.add(station)
    await s.flush()
    agent = await create_staff(
        s,
        phone="138" + f"{secrets.randbelow(10**8):08d}",
        password="Pw-" + secrets.token_hex(6),
        roles=["agent"],
        station_id=station.id,
    )
    item = items[DEPARTMENT_ITEM]
    scopes = ["apply", "track"]
    # Rows as the SMS-confirmed mandate writes them (the consent, then the mandate), without the
    # audit and notification jobs the bench has no runner for.
    for k in range(AGENT_RESIDENTS):
        phone = "137" + f"{secrets.randbelow(10**8):08d}"
        resident = Account(
            phone_hash=phone_hash(phone), phone_enc=encrypt_str(phone, aad="phone"), identity_level=2
        )
        s.add(resident)
        await s.flush()
        expires = now + dt.timedelta(days=90)
        c = Consent(
            account_id=resident.id,
            purpose=MANDATE_PURPOSE,
            scopes=scopes,
            grantee=f"agent:{agent.id}",
            granted_via="sms",
            text=f"同意{station.name}代办员代为办理",
            expires_at=expires,
        )
        s.add(c)
        await s.flush()
        mandate = Mandate(
            resident_id=resident.id,
            agent_id=agent.id,
            station_id=station.id,
            scopes=scopes,
            items=[],
            method="sms",
            consent_id=c.id,
            expires_at=expires,
        )
        s.add(mandate)
        await s.flush()
        filed = None
        for j in range(5):
            app, events = _app_row(rng, item, versions[item.code], now, n0 + k * 5 + j)
            app.applicant_id = resident.id
            app.agent_id = agent.id
            s.add(app)
            s.add_all(events)
            filed = app
        assert filed is not None
        s.add(
            Submission(
                agent_id=agent.id,
                client_key=secrets.token_hex(8),
                station_id=station.id,
                resident_id=resident.id,
                mandate_id=mandate.id,
                item_code=item.code,
                result={
                    "id": filed.id,
                    "number": filed.number,
                    "item_name": filed.item_name,
                    "status": "submitted",
                },
            )
        )
    return (await issue_pair(s, agent.id)).access_token, agent.id


async def populate(env: dict[str, str], applications: int, share: float) -> dict[str, Any]:
    """The catalogue, the applications and two staff tokens; what the pages are requested with."""
    os.environ.update(env)
    import sqlalchemy as sa
    from sqlmodel import col, select

    from app_api.core.db import dispose_engine, session_scope
    from app_api.platform.accounts.service import create_staff
    from app_api.platform.accounts.tokens import issue_pair
    from columns.gov_services import catalogue_io, catalogue_store
    from columns.gov_services.catalogue import CatalogueItem
    from columns.gov_services.models import Application, Item
    from columns.gov_services.workbench_catalogue import FORM_FIELDS, MULTI

    rng = random.Random(15)
    now = dt.datetime.now(dt.UTC)
    async with session_scope() as s:
        await catalogue_store.seed(s)
    async with session_scope() as s:
        versions = {r.code: r.current_version_id for r in (await s.exec(select(Item))).all()}
        items = {i.code: i for i in await catalogue_store.current_items(s)}
    own = items[DEPARTMENT_ITEM].department
    own_items = [i for i in items.values() if i.department == own]
    other_items = [i for i in items.values() if i.department != own]
    made = 0
    while made < applications:
        async with session_scope() as s:
            for _ in range(min(1000, applications - made)):
                pool = own_items if rng.random() < share else other_items
                item = rng.choice(pool)
                app, events = _app_row(rng, item, versions[item.code], now, made)
                s.add(app)
                s.add_all(events)
                made += 1
    tokens: dict[str, str] = {}
    ids: dict[str, str] = {}
    async with session_scope() as s:
        for role, extra in (("reviewer", {"department": own}), ("admin", {})):
            account = await create_staff(
                s,
                phone="139" + f"{secrets.randbelow(10**8):08d}",
                password="Pw-" + secrets.token_hex(6),
                roles=[role],
                **extra,
            )
            tokens[role] = (await issue_pair(s, account.id)).access_token
            ids[role] = account.id
    # A station agent who filed for AGENT_RESIDENTS residents under a tracking mandate each.
    async with session_scope() as s:
        tokens["agent"], ids["agent"] = await _agent_filings(s, rng, items, versions, now, applications)
    # A second version of one item, for the history page's diff.
    async with session_scope() as s:
        base = items[EDITED_ITEM]
        edited = CatalogueItem.model_validate(
            {
                **base.model_dump(mode="json"),
                "promised_days": base.promised_days + 2,
                "where_to_go": "谯城区政务服务中心二楼民政窗口",
            }
        )
        await catalogue_store.edit_item(s, data=edited, actor_id=ids["admin"])
    # The edit form as a browser sends it (checkbox groups as lists), for the preview.
    cells = catalogue_io.item_to_row(edited)
    form: dict[str, Any] = {
        f: cells[catalogue_io.HEADER_OF[f]].split("、") if f in MULTI else cells[catalogue_io.HEADER_OF[f]]
        for f in FORM_FIELDS
    }
    async with session_scope() as s:
        target = (
            await s.exec(
                select(Application.id)
                .where(Application.department == own, col(Application.status) == "accepted")
                .limit(1)
            )
        ).first()
        counts = (
            await s.exec(select(Application.status, sa.func.count()).group_by(col(Application.status)))
        ).all()
    await dispose_engine()
    return {"department": own, "tokens": tokens, "target": target, "counts": dict(counts), "form": form}


def measure(
    client: httpx.Client, method: str, url: str, warmup: int, requests: int, **kw: Any
) -> list[float]:
    for _ in range(warmup):
        r = client.request(method, url, **kw)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {url}: {r.status_code}\n{r.text[:2000]}")
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        r = client.request(method, url, **kw)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code >= 400:
            raise SystemExit(f"{method} {url}: {r.status_code}\n{r.text[:2000]}")
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--applications", type=int, default=10_000)
    ap.add_argument(
        "--share", type=float, default=0.4, help="share of applications in the reviewer's department"
    )
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", action="store_true", default=json_requested())
    args = ap.parse_args()
    plan = cpu_plan(args.no_pin)
    with scratch_database() as database_url:
        env = api_env(database_url, REDIS)
        migrate(env)
        t0 = time.monotonic()
        data = asyncio.run(populate(env, args.applications, args.share))
        print(
            f"{sum(data['counts'].values())} applications "
            f"({', '.join(f'{k} {v}' for k, v in data['counts'].items())}) "
            f"written in {time.monotonic() - t0:.0f} s; the reviewer's department: {data['department']}"
        )
        reviewer = {"Authorization": f"Bearer {data['tokens']['reviewer']}"}
        admin = {"Authorization": f"Bearer {data['tokens']['admin']}"}
        agent = {"Authorization": f"Bearer {data['tokens']['agent']}"}
        api = Server("app_api.wiring.main:app", env, 1, plan)
        with running(api), httpx.Client(base_url=api.base, timeout=30) as client:
            form = data["form"]
            pages: list[tuple[str, str, str, dict[str, Any]]] = [
                ("floor: GET /healthz (HTTP round trip)", "GET", "/healthz", {}),
                ("审核办件: queue by time left", "GET", f"{WB}/", {"headers": reviewer}),
                ("审核办件: queue by submission", "GET", f"{WB}/?sort=submitted", {"headers": reviewer}),
                ("审核办件: queue by item", "GET", f"{WB}/?sort=item", {"headers": reviewer}),
                (
                    "审核办件: one application",
                    "GET",
                    f"{WB}/applications/{data['target']}",
                    {"headers": reviewer},
                ),
                ("效能督办: own department", "GET", f"{WB}/supervision", {"headers": reviewer}),
                ("效能督办: all departments (admin)", "GET", f"{WB}/supervision", {"headers": admin}),
                ("效能督办: CSV export", "GET", f"{WB}/supervision.csv", {"headers": reviewer}),
                ("事项目录: list", "GET", f"{WB}/catalogue", {"headers": admin}),
                ("事项目录: search 老年证", "GET", f"{WB}/catalogue?q=老年证", {"headers": admin}),
                ("事项: edit form", "GET", f"{WB}/catalogue/items/{EDITED_ITEM}", {"headers": admin}),
                (
                    "事项: preview a change (POST)",
                    "POST",
                    f"{WB}/catalogue/items/{EDITED_ITEM}",
                    {"headers": admin, "data": {**form, "step": "preview", "promised_days": "9"}},
                ),
                (
                    "事项: version history and diff",
                    "GET",
                    f"{WB}/catalogue/items/{EDITED_ITEM}/versions",
                    {"headers": admin},
                ),
                ("事项目录: CSV export", "GET", f"{WB}/catalogue/export?format=csv", {"headers": admin}),
                ("代办员: home with the station's filings", "GET", AGENT_HOME, {"headers": agent}),
            ]
            home = client.get(AGENT_HOME, headers=agent).text
            if home.count('<td class="state">') != AGENT_RESIDENTS or "（提交时）" in home:
                raise SystemExit("the agent home does not list the filings with their current states")
            results = []
            for name, method, url, kw in pages:
                times = measure(client, method, url, args.warmup, args.requests, **kw)
                results.append((name, statistics.median(times), p95(times)))
    print(
        f"\n{args.requests} requests per page after {args.warmup} warm-up, one after another; one "
        f"uvicorn worker ({plan.label()}); PostgreSQL; goal <= {GOAL_MS:.0f} ms"
    )
    print(f"{'page':44s} {'median ms':>10s} {'p95 ms':>8s} {'goal/p95':>9s}")
    for name, med, high in results:
        print(f"{name:44s} {med:10.1f} {high:8.1f} {GOAL_MS / high:9.2f}")
    for name, med, high in results[1:]:
        emit(
            args.json,
            work=f"workbench page: {name} ({args.applications} applications)",
            goal=f"<= {GOAL_MS:.0f} ms",
            figure=f"p95 {high:.0f} ms (median {med:.0f})",
            ratio=round(GOAL_MS / high, 2),
        )


if __name__ == "__main__":
    main()
