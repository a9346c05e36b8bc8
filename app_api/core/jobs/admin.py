"""What an operator sees of the jobs and can do to them (``wojia jobs``, ``/api/v1/admin/jobs``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.core.jobs.models import JobSchedule, JobStatus, OutboxMessage
from app_api.core.jobs.outbox import _after_commit
from app_api.core.jobs.schedules import declared
from app_api.core.paging import after, page

_TABLE: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ScheduleState:
    name: str
    task_name: str
    cron: str
    declared: bool
    next_run_at: dt.datetime | None
    last_tick_at: dt.datetime | None
    last_status: str | None
    last_finished_at: dt.datetime | None
    last_failed_at: dt.datetime | None
    last_error: str | None


def _state(name: str, task_name: str, cron: str, declared: bool, row: JobSchedule | None) -> ScheduleState:
    return ScheduleState(
        name=name,
        task_name=task_name,
        cron=cron,
        declared=declared,
        next_run_at=row.next_run_at if row else None,
        last_tick_at=row.last_tick_at if row else None,
        last_status=row.last_status if row else None,
        last_finished_at=row.last_finished_at if row else None,
        last_failed_at=row.last_failed_at if row else None,
        last_error=row.last_error if row else None,
    )


async def schedules(session: AsyncSession) -> list[ScheduleState]:
    rows = {r.name: r for r in (await session.exec(select(JobSchedule))).all()}
    out = [_state(sch.name, sch.task_name, sch.cron, True, rows.pop(sch.name, None)) for sch in declared()]
    # Schedules no task declares any more (left by an older release).
    out += [_state(r.name, r.task_name, r.cron, False, r) for r in rows.values()]
    return out


async def counts(session: AsyncSession) -> dict[str, int]:
    rows = (
        await session.exec(  # type: ignore[call-overload]
            sa.select(_TABLE.c.status, sa.func.count()).group_by(_TABLE.c.status)
        )
    ).all()
    found = {str(status): int(n) for status, n in rows}
    return {s.value: found.get(s.value, 0) for s in JobStatus}


async def jobs(
    session: AsyncSession,
    *,
    status: JobStatus | None = None,
    task_name: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[OutboxMessage], str | None]:
    """Jobs newest first (by creation), optionally of one status or task, and the next page's cursor."""
    q = select(OutboxMessage)
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    if task_name is not None:
        q = q.where(OutboxMessage.task_name == task_name)
    q = after(
        q,
        at_column=col(OutboxMessage.created_at),
        id_column=col(OutboxMessage.id),
        cursor=cursor,
        limit=limit,
    )
    rows = (await session.exec(q)).all()
    return page(rows, limit=limit, key=lambda r: (r.created_at, r.id))


async def job(session: AsyncSession, job_id: str) -> OutboxMessage | None:
    return await session.get(OutboxMessage, job_id)


async def retry(session: AsyncSession, job_id: str) -> bool:
    """Send a dead job again with a fresh set of attempts (after the session commits).
    Returns False when the job is not dead (nothing changed)."""
    result: Any = await session.exec(
        sa.update(_TABLE)
        .where(_TABLE.c.id == job_id, _TABLE.c.status == JobStatus.dead)
        .values(
            status=JobStatus.pending,
            attempts=0,
            due_at=utcnow(),
            dispatched_at=None,
            finished_at=None,
            lease_until=None,
        )
    )
    if result.rowcount != 1:
        return False
    _after_commit(session, [job_id])
    return True


async def retry_all_dead(session: AsyncSession, *, task_name: str | None = None) -> int:
    q = select(OutboxMessage.id).where(OutboxMessage.status == JobStatus.dead)
    if task_name is not None:
        q = q.where(OutboxMessage.task_name == task_name)
    n = 0
    for job_id in (await session.exec(q)).all():
        n += await retry(session, job_id)
    return n
