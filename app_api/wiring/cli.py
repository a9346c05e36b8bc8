"""The ``wojia`` command: migrations, staff accounts, audit verification, demo data, processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
from typing import Annotated, Any

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="我家 Wojia platform commands")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
staff_app = typer.Typer(no_args_is_help=True, help="Staff accounts")
audit_app = typer.Typer(no_args_is_help=True, help="Audit log")
app.add_typer(db_app, name="db")
app.add_typer(staff_app, name="staff")
app.add_typer(audit_app, name="audit")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every package's migrations (alembic upgrade heads)."""
    from app_api.wiring.migrate import upgrade

    upgrade()
    typer.echo("database is up to date")


@db_app.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree (alembic check), on a scratch database."""
    import tempfile

    from app_api.wiring.migrate import check, upgrade

    url = os.environ.get("WOJIA_DATABASE_URL")
    if not url or url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/check.db"
            upgrade(url)
            check(url)
        typer.echo("migrations match the models (SQLite)")
        return
    import secrets

    import asyncpg

    scratch = f"wojia_check_{secrets.token_hex(4)}"
    admin_dsn = url.replace("postgresql+asyncpg://", "postgresql://")

    async def pg(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(pg(f'CREATE DATABASE "{scratch}"'))
    try:
        scratch_url = url.rsplit("/", 1)[0] + f"/{scratch}"
        upgrade(scratch_url)
        check(scratch_url)
    finally:
        asyncio.run(pg(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    typer.echo("migrations match the models (PostgreSQL)")


@db_app.command("revision")
def db_revision(package: str, message: Annotated[str, typer.Option("-m", "--message")]) -> None:
    """Autogenerate a migration for one package's tables, into that package's branch."""
    from app_api.wiring.migrate import revision

    revision(package, message)


@staff_app.command("create")
def staff_create(
    phone: Annotated[str, typer.Option()],
    role: Annotated[list[str], typer.Option(help="resident, agent, reviewer, finance, bank_officer, admin")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    department: Annotated[str | None, typer.Option()] = None,
    institution: Annotated[str | None, typer.Option()] = None,
    station: Annotated[str | None, typer.Option()] = None,
    supervisor_of: Annotated[str | None, typer.Option(help="department this reviewer supervises")] = None,
) -> None:
    """Create a staff account (or change an account's roles) with an argon2 password."""
    from app_api.core.db import session_scope
    from app_api.platform.accounts.service import create_staff

    async def run() -> str:
        async with session_scope() as s:
            a = await create_staff(
                s,
                phone=phone,
                password=password,
                roles=role,
                department=department,
                institution_id=institution,
                station_id=station,
                supervisor_of=supervisor_of,
            )
            return a.id

    typer.echo(f"staff account {asyncio.run(run())} has roles {', '.join(role)}")


@audit_app.command("verify")
def audit_verify() -> None:
    """Verify the audit hash chain; exit 1 naming the first broken entry."""
    from app_api.core.db import sessionmaker
    from app_api.platform.audit import verify_chain

    async def run() -> tuple[bool, int, int | None, str | None]:
        async with sessionmaker()() as s:
            r = await verify_chain(s)
            return r.ok, r.checked, r.first_broken_seq, r.reason

    ok, checked, broken, reason = asyncio.run(run())
    if ok:
        typer.echo(f"audit chain intact: {checked} entries")
        return
    typer.echo(
        f"audit chain BROKEN at entry {broken}: {reason} ({checked} entries verified before it)", err=True
    )
    raise typer.Exit(1)


@app.command("seed")
def seed() -> None:
    """Load demo data (development only)."""
    from app_api.wiring.seed import run_seed

    asyncio.run(run_seed(echo=typer.echo))


def uvicorn_options(*, host: str, port: int, workers: int) -> dict[str, Any]:
    """What ``wojia serve`` passes to uvicorn: no ``server`` banner, our own logging, and no
    WebSocket protocol (the api serves none; uvicorn would otherwise load the websockets library in
    every worker, about 3 MB, issue 19; an upgrade request is answered as plain HTTP)."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "ws": "none",
        "proxy_headers": True,
        "server_header": False,
        "log_config": None,
        "access_log": False,
    }


@app.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    migrate: Annotated[bool, typer.Option(help="apply migrations first")] = True,
) -> None:
    """Serve the API with uvicorn (refuses settings unsafe outside development)."""
    import uvicorn

    from app_api.core.settings import get_settings

    if get_settings().is_dev and "public_base_url" not in get_settings().model_fields_set:
        # Development: the sandboxes and callbacks are reached where this server listens
        # (the workers read it from the environment).
        reachable = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104 (a test)
        reachable = f"[{reachable}]" if ":" in reachable else reachable
        os.environ["WOJIA_PUBLIC_BASE_URL"] = f"http://{reachable}:{port}"
        get_settings.cache_clear()
    problems = get_settings().serving_problems()
    if problems:
        for problem in problems:
            typer.echo(f"refusing to start: {problem}", err=True)
        raise typer.Exit(2)
    if migrate:
        from app_api.wiring.migrate import upgrade

        upgrade()
    uvicorn.run("app_api.wiring.main:app", **uvicorn_options(host=host, port=port, workers=workers))


@app.command("worker")
def worker(workers: int = 1) -> None:
    """Run the job worker (taskiq) against Redis."""
    from taskiq.cli.worker.run import run_worker

    sys.argv = ["taskiq", "worker", "app_api.wiring.worker:broker", "--workers", str(workers)]
    from taskiq.cli.worker.args import WorkerArgs

    raise SystemExit(run_worker(WorkerArgs.from_cli(sys.argv[2:])) or 0)


@app.command("scheduler")
def scheduler_cmd() -> None:
    """Run the periodic jobs and the outbox relay (any number may run: each tick runs once)."""

    async def main() -> None:
        from app_api.core.jobs.loop import loop
        from app_api.wiring.worker import broker

        await broker.startup()
        loop.start()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        await loop.stop()
        await broker.shutdown()

    asyncio.run(main())


jobs_app = typer.Typer(help="Jobs: schedules, dead letters, retries.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


def _when(moment: dt.datetime | None) -> str:
    if moment is None:
        return "-"
    from app_api.core.clock import CHINA_TZ

    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


@jobs_app.command("status")
def jobs_status() -> None:
    """Each schedule's last run, next run and last failure, and the jobs by state."""

    async def main() -> None:
        import app_api.wiring.worker  # noqa: F401  (registers every task)
        from app_api.core.db import sessionmaker
        from app_api.core.jobs import admin

        async with sessionmaker()() as s:
            states = await admin.schedules(s)
            counts = await admin.counts(s)
        typer.echo(
            f"{'schedule':<38} {'cron':<15} {'last run':<20} {'status':<8} {'next run':<20} last failure"
        )
        for st in states:
            flag = "" if st.declared else "  (no longer declared)"
            typer.echo(
                f"{st.name:<38} {st.cron:<15} {_when(st.last_finished_at):<20} {st.last_status or '-':<8} "
                f"{_when(st.next_run_at):<20} {_when(st.last_failed_at)}"
                + (f"  {st.last_error[:80]}" if st.last_error else "")
                + flag
            )
        typer.echo("jobs: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + "  (times: China)")

    asyncio.run(main())


@jobs_app.command("dead")
def jobs_dead(
    task: Annotated[str | None, typer.Option(help="only this task")] = None, limit: int = 50
) -> None:
    """List jobs in dead letter, newest first."""

    async def main() -> None:
        from app_api.core.db import sessionmaker
        from app_api.core.jobs import admin
        from app_api.core.jobs.models import JobStatus

        async with sessionmaker()() as s:
            rows, _ = await admin.jobs(s, status=JobStatus.dead, task_name=task, limit=limit)
        for r in rows:
            when = _when(r.finished_at)
            typer.echo(f"{r.id}  {r.task_name:<34} attempts {r.attempts:<3} {when}  {r.last_error or ''}")
        typer.echo(f"{len(rows)} dead")

    asyncio.run(main())


@jobs_app.command("show")
def jobs_show(job_id: str) -> None:
    """One job in full (arguments, attempts, last error)."""

    async def main() -> None:
        from app_api.core.db import sessionmaker
        from app_api.core.jobs import admin

        async with sessionmaker()() as s:
            r = await admin.job(s, job_id)
        if r is None:
            typer.echo(f"no job {job_id}", err=True)
            raise typer.Exit(1)
        typer.echo(json.dumps(r.model_dump(mode="json"), ensure_ascii=False, indent=2))

    asyncio.run(main())


@jobs_app.command("retry")
def jobs_retry(
    job_id: Annotated[str | None, typer.Argument(help="a dead job; omit with --all-dead")] = None,
    all_dead: Annotated[bool, typer.Option("--all-dead", help="every dead job")] = False,
    task: Annotated[str | None, typer.Option(help="with --all-dead: only this task")] = None,
) -> None:
    """Send dead jobs again with fresh attempts."""

    async def main() -> None:
        import app_api.wiring.worker  # noqa: F401
        from app_api.core.db import session_scope
        from app_api.core.jobs import admin, broker

        await broker.startup()
        try:
            async with session_scope() as s:
                if all_dead:
                    n = await admin.retry_all_dead(s, task_name=task)
                elif job_id is not None:
                    n = int(await admin.retry(s, job_id))
                else:
                    typer.echo("give a job id or --all-dead", err=True)
                    raise typer.Exit(2)
        finally:
            from app_api.core.jobs.outbox import flush_marks

            await flush_marks()
            await broker.shutdown()
        if job_id is not None and not all_dead and n == 0:
            typer.echo(f"job {job_id} is not in dead letter", err=True)
            raise typer.Exit(1)
        typer.echo(f"{n} job(s) sent again")

    asyncio.run(main())


if __name__ == "__main__":
    app()
