"""Periodic jobs, ticked through PostgreSQL so each tick runs exactly once.

A task declares its schedule with taskiq's label (``@broker.task(schedule=[{"cron": "*/5 * * * *"}])``;
crons are in UTC). Every process that runs the jobs loop keeps one ``app_job_schedule`` row per
schedule and, every second, looks for rows whose ``next_run_at`` passed. A tick is claimed by moving
``next_run_at`` forward with a compare-and-set in the same transaction that writes the tick's job
(an outbox row whose id is derived from the schedule and the tick). Whoever loses the compare-and-set
writes nothing, so any number of schedulers (the worker processes, ``wojia scheduler``, the api in the
embedded default) run each tick once, with no leader and nothing kept in Redis. Ticks missed while no
scheduler ran are not replayed one by one: the schedule runs once and moves on to its next time. A
tick whose previous job is still waiting or running is skipped (a slow sweep is not stacked up).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Collection
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from app_api.core.db import sessionmaker, utcnow
from app_api.core.jobs.broker import broker
from app_api.core.jobs.models import JobSchedule, JobStatus, OutboxMessage
from app_api.core.jobs.outbox import _dispatched, send

log = logging.getLogger(__name__)
_SCHED: sa.Table = JobSchedule.__table__  # type: ignore[attr-defined]
_OUTBOX: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Schedule:
    name: str
    task_name: str
    cron: str


def declared() -> list[Schedule]:
    """Every schedule the registered tasks declare."""
    out = []
    for task_name, task in sorted(broker.get_all_tasks().items()):
        entries = task.labels.get("schedule") or []
        for i, entry in enumerate(entries):
            cron = entry.get("cron")
            if not cron:
                continue
            from croniter import croniter  # here: the api module imports faster (issue 19)

            if not croniter.is_valid(cron):
                raise ValueError(f"task {task_name}: invalid cron {cron!r}")
            name = task_name if len(entries) == 1 else f"{task_name}[{i}]"
            out.append(Schedule(name=name, task_name=task_name, cron=cron))
    return out


def next_after(cron: str, moment: dt.datetime) -> dt.datetime:
    from croniter import croniter

    nxt: dt.datetime = croniter(cron, moment.astimezone(dt.UTC)).get_next(dt.datetime)
    return nxt if nxt.tzinfo else nxt.replace(tzinfo=dt.UTC)


def tick_job_id(schedule: str, tick: dt.datetime) -> str:
    digest = hashlib.sha256(f"{schedule}@{tick.astimezone(dt.UTC).isoformat()}".encode()).hexdigest()
    return "s" + digest[:31]


async def sync(now: dt.datetime | None = None) -> int:
    """Create rows for new schedules and follow changed crons; returns how many rows changed."""
    now = now or utcnow()
    changed = 0
    async with sessionmaker()() as session:
        dialect = session.bind.dialect.name
        existing = {r.name: r for r in (await session.exec(select(JobSchedule))).all()}
        for sch in declared():
            row = existing.get(sch.name)
            if row is None:
                values = {
                    "name": sch.name,
                    "task_name": sch.task_name,
                    "cron": sch.cron,
                    "next_run_at": next_after(sch.cron, now),
                }
                insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_SCHED)
                await session.exec(insert.values(**values).on_conflict_do_nothing(index_elements=["name"]))
                changed += 1
            elif row.cron != sch.cron or row.task_name != sch.task_name:
                await session.exec(
                    sa.update(_SCHED)
                    .where(_SCHED.c.name == sch.name, _SCHED.c.cron == row.cron)
                    .values(cron=sch.cron, task_name=sch.task_name, next_run_at=next_after(sch.cron, now))
                )
                changed += 1
        await session.commit()
    return changed


async def tick(now: dt.datetime | None = None, *, only: Collection[str] | None = None) -> list[str]:
    """Write the job of every schedule that is due (of those named in ``only``, if given); returns
    the job ids this process wrote."""
    now = now or utcnow()
    written: list[str] = []
    async with sessionmaker()() as session:
        q = select(JobSchedule).where(JobSchedule.next_run_at <= now)
        if only is not None:
            q = q.where(col(JobSchedule.name).in_(list(only)))
        due = (await session.exec(q.order_by(col(JobSchedule.next_run_at)))).all()
        plans = [(r.name, r.task_name, r.cron, r.next_run_at, r.last_job_id) for r in due]
    for name, task_name, cron, due_at, last_job_id in plans:
        async with sessionmaker()() as session:
            busy = False
            if last_job_id is not None:
                status = (
                    await session.exec(sa.select(_OUTBOX.c.status).where(_OUTBOX.c.id == last_job_id))  # type: ignore[call-overload]
                ).first()
                busy = status is not None and status[0] in (
                    JobStatus.pending,
                    JobStatus.running,
                    JobStatus.retry,
                )
            job_id = tick_job_id(name, due_at)
            claimed = await session.exec(
                sa.update(_SCHED)
                .where(_SCHED.c.name == name, _SCHED.c.next_run_at == due_at)
                .values(
                    next_run_at=next_after(cron, now),
                    last_tick_at=now,
                    last_job_id=last_job_id if busy else job_id,
                )
            )
            if claimed.rowcount != 1:
                await session.rollback()  # another scheduler took this tick
                continue
            if busy:
                log.info("schedule %s: previous run %s not finished; this tick is skipped", name, last_job_id)
            else:
                session.add(
                    OutboxMessage(
                        id=job_id, task_name=task_name, arguments={}, due_at=utcnow(), schedule=name
                    )
                )
                written.append(job_id)
            await session.commit()
    if written:
        _dispatched.add(await send(written))
    return written
