"""One-tap application cost on PostgreSQL: SQL statements and commits per submission, and
submissions per second beside a bare INSERT-per-submission baseline measured in the same run.

A resident's tap is the column's one-tap service in one unit of work, as ``POST
/applications/one-tap`` runs it: the draft, the consent per record group (人口信息 and 电子证照) and
the data center reads they allow (consent check, access log, audit), the materials and conditions
check, and the submission (timeline, audit, notification through the outbox). The baseline is one
INSERT of an equivalent application row (a draft with its encrypted form) per submission, in its
own transaction, through the same engine, pool and concurrency. The two sides alternate for
``rounds`` rounds; medians are reported, and their ratio against the goal (0.3x the baseline).

Statements are counted with the engine's ``before_cursor_execute`` event: once for one traced tap
(each statement printed with its phase), and over every round (all statements the process ran,
divided by the submissions). Commits are counted the same way (the engine's ``commit`` event).

The rounds measure the api side, as in production where the job worker is another process: the jobs
the submissions write (the notification's delivery) stay in the outbox during the rounds (their
wake-ups are held back; the rows are written and committed as always). After the rounds they are
released to the in-process worker, and its delivery is measured on its own (statements, commits
and CPU per notification).

Run: .venv/bin/python bench/gov_services_submit.py [submissions per round] [concurrency] [rounds]
Needs PostgreSQL: ``BENCH_PG`` (default postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) is the
admin DSN, used only to create a scratch database and drop it at the end. Figures, not pass/fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

BASE = os.environ.get("BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
SCRATCH = f"wojia_bench_gov_{uuid.uuid4().hex[:8]}"
os.environ["WOJIA_DATABASE_URL"] = BASE.rsplit("/", 1)[0] + f"/{SCRATCH}"
os.environ.setdefault("WOJIA_ENVIRONMENT", "test")
os.environ["WOJIA_JOBS_EMBEDDED"] = "true"
os.environ["WOJIA_LOG_JSON"] = "false"
os.environ.setdefault("WOJIA_VAR_DIR", f"/tmp/{SCRATCH}")

CERTS = (
    ("resident_id_card", "居民身份证"),
    ("household_register", "居民户口簿"),
    ("social_security_card", "社会保障卡"),
)
ITEM = "BZ-MZ-002"  # 高龄津贴申领: every material by e-certificate reference
GROUPS = ["person", "certificate"]
GOAL_STATEMENTS = 15
GOAL_RATIO = 0.3

# Which step of the tap a statement belongs to, by the table it touches (first match wins).
PHASES = (
    ("WITH au_head", "append-only rows + audit entries linked into the chain, one statement (at commit)"),
    ("WITH wb_", "append-only rows, one statement (at commit)"),
    ("FROM gov_services_item", "item version + account + message preference"),
    ("app_audit_", "audit chain (at commit)"),
    ("app_consent", "consent"),
    ("app_datahub_person", "records: population"),
    ("app_datahub_certificate", "records: e-certificates"),
    ("app_datahub_access", "records: access log"),
    ("app_notif", "notification"),
    ("app_outbox", "notification"),
    ("gov_services_event", "timeline"),
    ("INSERT INTO gov_services_application", "draft"),
    ("FROM app_account", "account (ID number)"),
    ("UPDATE gov_services_application", "submit (form, status, clock)"),
    ("gov_services_upload", "materials check"),
    ("FROM gov_services_application", "load the application"),
)


class Counting:
    """Statements and commits the engine runs (every connection of the process)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0
        self.trace: list[str] | None = None

    def attach(self, engine: Any) -> None:
        from sqlalchemy import event

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            self.statements += 1
            if self.trace is not None:
                self.trace.append(" ".join(statement.split()))

        @event.listens_for(engine.sync_engine, "commit")
        def _commit(conn: Any) -> None:
            self.commits += 1


def phase_of(statement: str) -> str:
    return next((name for key, name in PHASES if key in statement), "other")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(BASE.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _residents(n: int) -> list[str]:
    import datetime as dt

    from app_api.core.crypto import encrypt_str, lookup_hash
    from app_api.core.db import session_scope
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.citizen_id import make
    from app_api.platform.datahub.models import ECertificate, PopulationRecord
    from app_api.platform.datahub.service import id_hash
    from app_api.platform.notify.models import NotifyPreference

    ids = []
    async with session_scope() as s:
        for i in range(n):
            id_number = make("341602", dt.date(1940, 1, 1) + dt.timedelta(days=i // 900), i % 900 + 1)
            phone = f"137{i:08d}"
            account = Account(
                phone_hash=lookup_hash(phone, purpose="phone"),
                phone_enc=encrypt_str(phone, aad="phone"),
                identity_level=2,
                real_name_enc=encrypt_str("测试", aad="name"),
                id_number_enc=encrypt_str(id_number, aad="id_number"),
                id_number_hash=id_hash(id_number),
            )
            s.add(account)
            # Messages go out at once whatever the hour of the run (no quiet hours): the notification
            # and its outbox job are written as in the daytime.
            s.add(NotifyPreference(account_id=account.id, quiet_hours_enabled=False))
            s.add(
                PopulationRecord(
                    id_number_hash=id_hash(id_number),
                    id_number_enc=encrypt_str(id_number, aad="id_number"),
                    name_enc=encrypt_str("测试", aad="name"),
                    gender="男",
                    birth_date=dt.date(1940, 1, 1),
                    address_enc=encrypt_str("安徽省亳州市谯城区", aad="address"),
                    household="亳州市谯城区",
                )
            )
            for code, title in CERTS:
                s.add(
                    ECertificate(
                        holder_id_hash=id_hash(id_number),
                        cert_type=code,
                        cert_no=f"B{uuid.uuid4().hex[:16]}",
                        title=title,
                        issuer="亳州市公安局",
                        issued_on=dt.date(2016, 1, 1),
                    )
                )
            ids.append(account.id)
    return ids


async def one_tap(account_id: str) -> None:
    """A resident's tap: one unit of work, as the one-tap endpoint runs it."""
    from app_api.core.db import session_scope
    from app_api.platform.accounts.principal import Principal
    from columns.gov_services import applications

    principal = Principal(id=account_id, roles=("resident",), identity_level=2)
    async with session_scope() as s:
        app, created = await applications.one_tap(
            s,
            principal=principal,
            item_code=ITEM,
            client_key=uuid.uuid4().hex,
            groups=GROUPS,
            delivery=None,
            address=None,
        )
        assert created and app.status == "submitted", app.status


async def stepwise(account_id: str) -> None:
    """The same application in three requests (create, prefill, submit), for comparison."""
    from app_api.core.db import session_scope
    from app_api.platform.accounts.principal import Principal
    from columns.gov_services import applications, prefill

    principal = Principal(id=account_id, roles=("resident",), identity_level=2)
    async with session_scope() as s:
        app, _ = await applications.create_application(
            s, principal=principal, item_code=ITEM, client_key=uuid.uuid4().hex
        )
    async with session_scope() as s:
        app = await applications.owned_application(s, app_id=app.id, principal=principal)
        await prefill.prefill(s, app=app, principal=principal, groups=GROUPS)
    async with session_scope() as s:
        done = await applications.submit(s, app_id=app.id, principal=principal, delivery=None, address=None)
        assert done.status == "submitted"


def _baseline_maker(template: dict[str, Any]) -> Callable[[str], Awaitable[None]]:
    """One INSERT of an application row like the tap's (a draft with an encrypted form), in its own
    transaction on the same engine."""
    import json

    from app_api.core.crypto import encrypt_str
    from app_api.core.db import get_engine, utcnow
    from columns.gov_services.models import Application

    table = Application.__table__  # type: ignore[attr-defined]
    form = json.dumps(template["form"], ensure_ascii=False)

    async def insert(account_id: str) -> None:
        app_id = uuid.uuid4().hex
        now = utcnow()
        row = {
            **template["row"],
            "id": app_id,
            "number": f"B{uuid.uuid4().hex[:20]}",
            "client_key": uuid.uuid4().hex,
            "applicant_id": account_id,
            "form_enc": encrypt_str(form, aad=f"gov_app:{app_id}"),
            "created_at": now,
            "updated_at": now,
        }
        async with get_engine().begin() as conn:
            await conn.execute(table.insert().values(row))

    return insert


async def _template(account_id: str) -> dict[str, Any]:
    """A submitted application's row and form, to copy for the baseline's rows."""
    from sqlmodel import col, select

    from app_api.core.db import session_scope
    from columns.gov_services.lifecycle import form_of
    from columns.gov_services.models import Application

    async with session_scope() as s:
        app = (
            await s.exec(
                select(Application)
                .where(Application.applicant_id == account_id)
                .order_by(col(Application.created_at).desc())
            )
        ).first()
        assert app is not None
        row = app.model_dump()
        return {"row": row, "form": form_of(app)}


async def _round(
    fn: Callable[[str], Awaitable[None]], accounts: list[str], concurrency: int, counting: Counting
) -> dict[str, float]:
    sem = asyncio.Semaphore(concurrency)

    async def guarded(a: str) -> None:
        async with sem:
            await fn(a)

    s0, k0 = counting.statements, counting.commits
    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*[guarded(a) for a in accounts])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(accounts)
    return {
        "rate": n / wall,
        "cpu_ms": cpu / n * 1000,
        "statements": (counting.statements - s0) / n,
        "commits": (counting.commits - k0) / n,
    }


DRAIN_POLLS = [0]


async def _drain() -> None:
    """Wait until the worker has run every job written so far."""
    import sqlalchemy as sa

    from app_api.core.db import get_engine
    from app_api.core.jobs.models import JobStatus, OutboxMessage

    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    waiting = sa.select(sa.func.count()).where(table.c.status.in_([JobStatus.pending, JobStatus.running]))
    for _ in range(600):
        DRAIN_POLLS[0] += 1
        async with get_engine().connect() as conn:
            if not (await conn.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.5)
    raise RuntimeError("jobs still waiting after 5 minutes")


async def _traced(fn: Callable[[str], Awaitable[None]], account: str, counting: Counting) -> list[str]:
    await asyncio.sleep(1.0)  # let the worker finish earlier jobs: only the tap's statements below
    counting.trace = []
    k0 = counting.commits
    await fn(account)
    trace, counting.trace = counting.trace, None
    trace.append(f"-- commits: {counting.commits - k0}")
    return trace


async def main() -> None:
    per_round = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    await _pg(f'CREATE DATABASE "{SCRATCH}"')
    try:
        from app_api.wiring.migrate import upgrade

        await asyncio.to_thread(upgrade)
        from app_api.core.db import dispose_engine, get_engine, session_scope
        from app_api.core.jobs import broker, outbox
        from app_api.platform.notify import get_notify_settings  # noqa: F401  (templates registered)
        from columns.gov_services import catalogue_store

        await broker.startup()
        async with session_scope() as s:
            await catalogue_store.seed(s)
        accounts = await _residents(per_round + 8)
        counting = Counting()
        counting.attach(get_engine())
        # Warm-up: connections, caches (the item version), first-use imports.
        for a in accounts[:4]:
            await one_tap(a)
            await stepwise(a)
        baseline = _baseline_maker(await _template(accounts[0]))
        for a in accounts[:4]:
            await baseline(a)

        tap_trace = await _traced(one_tap, accounts[4], counting)
        step_trace = await _traced(stepwise, accounts[5], counting)
        base_trace = await _traced(baseline, accounts[6], counting)

        taps: list[dict[str, float]] = []
        bases: list[dict[str, float]] = []
        pool = accounts[8:]
        await _drain()
        held: list[str] = []
        real_send = outbox.send

        async def hold(ids: Any) -> list[str]:
            held.extend(ids)
            return []

        outbox.send = hold
        try:
            for r in range(rounds):
                # Alternate which side goes first, so neither always runs on a warmer (or busier) machine.
                order = [("tap", one_tap, taps), ("baseline", baseline, bases)]
                for _name, fn, out in order if r % 2 == 0 else reversed(order):
                    out.append(await _round(fn, pool, concurrency, counting))
        finally:
            outbox.send = real_send
        s0, k0, c0 = counting.statements, counting.commits, time.process_time()
        await real_send(held)
        await _drain()
        jobs = max(len(held), 1)
        delivery = (
            (counting.statements - s0) / jobs,
            (counting.commits - k0) / jobs,
            (time.process_time() - c0) / jobs * 1000,
        )

        host = BASE.rsplit("@", 1)[-1].rsplit("/", 1)[0]
        print(f"PostgreSQL {host}; item {ITEM}, consent groups {'+'.join(GROUPS)}")
        print(f"{per_round} submissions per round per side, concurrency {concurrency}, {rounds} rounds\n")

        own = [t for t in tap_trace if not t.startswith("--")]
        print(f"one traced tap (the one-tap endpoint's work): {len(own)} statements, {tap_trace[-1][3:]}")
        for i, st in enumerate(own, 1):
            print(f"  {i:2d}. [{phase_of(st)}] {st[:110]}")
        phases = Counter(phase_of(st) for st in own)
        print("  per phase: " + ", ".join(f"{k} {v}" for k, v in phases.items()))
        verdict = "meets" if len(own) <= GOAL_STATEMENTS else "misses"
        print(f"  {verdict} the goal of <= {GOAL_STATEMENTS} statements per submission")
        step_own = [t for t in step_trace if not t.startswith("--")]
        step_phases = Counter(phase_of(st) for st in step_own)
        print(
            f"\nthe same application in three requests (create, prefill, submit): {len(step_own)} statements,"
            " "
            f"{step_trace[-1][3:]}; per phase: " + ", ".join(f"{k} {v}" for k, v in step_phases.items())
        )
        base_own = [t for t in base_trace if not t.startswith("--")]
        print(f"baseline: {len(base_own)} statement ({base_own[0][:60]}...), {base_trace[-1][3:]}\n")

        def med(rows: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in rows)

        for name, rows in (("one-tap", taps), ("baseline", bases)):
            rates = ", ".join(f"{r['rate']:.1f}" for r in rows)
            print(
                f"{name:9s} submissions/s per round: {rates}; median {med(rows, 'rate'):.1f}; "
                f"api process CPU {med(rows, 'cpu_ms'):.2f} ms per submission"
            )
            print(
                f"{'':9s} per submission, counted over the rounds (every statement and commit of the "
                f"process; the worker idle, its jobs held): {med(rows, 'statements'):.1f} statements, "
                f"{med(rows, 'commits'):.2f} commits"
            )
        print(
            f"background delivery of the {len(held)} notifications afterwards (the job worker; in production "
            f"another process), per notification: {delivery[0]:.1f} statements (its {DRAIN_POLLS[0]} polls "
            f"of the outbox included), {delivery[1]:.2f} commits, {delivery[2]:.1f} ms CPU"
        )
        ratio = med(taps, "rate") / med(bases, "rate")
        verdict = "meets" if ratio >= GOAL_RATIO else "misses"
        print(f"\nratio one-tap / baseline (medians): {ratio:.2f}x, {verdict} the goal of >= {GOAL_RATIO}x")
        for line in (
            {
                "work": "one-tap submissions vs bare INSERT",
                "goal": f">= {GOAL_RATIO}x",
                "figure": f"{med(taps, 'rate'):.0f}/s vs {med(bases, 'rate'):.0f}/s ({ratio:.2f}x)",
                "ratio": round(ratio / GOAL_RATIO, 3),
            },
            {
                "work": "SQL statements per one-tap submission",
                "goal": f"<= {GOAL_STATEMENTS}",
                "figure": f"{med(taps, 'statements'):.0f}",
                "ratio": round(GOAL_STATEMENTS / max(med(taps, "statements"), 1), 3),
            },
        ):
            print("BENCH " + json.dumps(line, ensure_ascii=False))
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine may be shared)")
        await outbox.flush_marks()
        await broker.shutdown()
        await dispose_engine()
    finally:
        await _pg(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
