"""Jobs for administrators: states, schedules, dead letters and retrying them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from app_api.core.db import SessionDep
from app_api.core.errors import Conflict, NotFound
from app_api.core.jobs import admin
from app_api.core.jobs.models import JobStatus, OutboxMessage
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import Admin
from app_api.platform.audit import record

router = APIRouter(tags=["admin"])


class JobNotFound(NotFound):
    code = "jobs.not_found"
    title = "任务不存在"


class JobNotDead(Conflict):
    code = "jobs.not_dead"
    title = "该任务不在死信队列中，无需重试"


class Job(BaseModel):
    id: str
    task_name: str
    status: JobStatus
    attempts: int
    created_at: dt.datetime
    due_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    last_error: str | None
    schedule: str | None


class JobDetail(Job):
    arguments: dict[str, Any]


class Jobs(BaseModel):
    counts: dict[str, int]
    items: list[Job]
    next_cursor: str | None


class Schedule(BaseModel):
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


def _job(row: OutboxMessage) -> Job:
    return Job.model_validate(row, from_attributes=True)


@router.get("/admin/jobs")
async def list_jobs(
    _: Admin,
    session: SessionDep,
    status: JobStatus | None = None,
    task: str | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 50,
) -> Jobs:
    """Jobs newest first, with the count in each state; ``status=dead`` is the dead-letter list."""
    rows, next_cursor = await admin.jobs(session, status=status, task_name=task, cursor=cursor, limit=limit)
    return Jobs(counts=await admin.counts(session), items=[_job(r) for r in rows], next_cursor=next_cursor)


@router.get("/admin/jobs/schedules")
async def list_schedules(_: Admin, session: SessionDep) -> list[Schedule]:
    """Each periodic job: its cron (UTC), next run, last run and last failure."""
    return [Schedule.model_validate(st, from_attributes=True) for st in await admin.schedules(session)]


@router.get("/admin/jobs/{job_id}")
async def get_job(_: Admin, session: SessionDep, job_id: str) -> JobDetail:
    row = await admin.job(session, job_id)
    if row is None:
        raise JobNotFound()
    return JobDetail.model_validate(row, from_attributes=True)


@router.post("/admin/jobs/{job_id}/retry")
async def retry_job(principal: Admin, session: SessionDep, job_id: str) -> Job:
    """Send a dead job again with a fresh set of attempts."""
    row = await admin.job(session, job_id)
    if row is None:
        raise JobNotFound()
    if not await admin.retry(session, job_id):
        raise JobNotDead()
    await record(
        session,
        action="jobs.retry",
        subject_id=job_id,
        actor_id=principal.id,
        subject_type="job",
        data={"task": row.task_name},
    )
    await session.refresh(row)
    return _job(row)
