"""The job runner: claim an outbox row, run its task, record the outcome.

A task is any ``@broker.task`` function; the broker carries only ``app.run_job(outbox_id)`` and the
runner calls the task's function with the row's arguments (plus ``outbox_id`` when it takes one).

- **Claim**: one conditional UPDATE (``pending``/``retry`` and due -> ``running``, attempt + 1, lease).
  A second message for the same job finds it running or done and does nothing.
- **Lease**: renewed every third of ``lease_s`` while the task runs; a worker killed -9 stops renewing,
  and the relay sends the job again once the lease ran out.
- **Done**: recorded after the function returned (in batches, fenced by the attempt number: a late
  answer of a run whose lease was taken over does not overwrite the newer run).
- **Failure**: backoff ``min(cap, base * 2**(attempt-1))`` with jitter, then ``dead`` after the task's
  attempts (label ``max_retries``: that many retries after the first attempt; default
  ``WOJIA_JOBS_MAX_ATTEMPTS``). Arguments that do not fit the task's signature, an unknown task, and
  ``PermanentJobError`` go to ``dead`` at once: retrying cannot help. A job that kills its worker every
  time is counted too (the attempt is taken at the claim) and ends ``dead``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import random
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from prometheus_client import Counter

from app_api.core.db import sessionmaker, utcnow
from app_api.core.jobs.broker import broker
from app_api.core.jobs.models import JobSchedule, JobStatus, OutboxMessage
from app_api.core.jobs.outbox import RUN_TASK, _Batcher, send
from app_api.core.jobs.settings import get_jobs_settings

log = logging.getLogger(__name__)
_TABLE: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
C = _TABLE.c
_SCHED: sa.Table = JobSchedule.__table__  # type: ignore[attr-defined]

JOBS = Counter("wojia_jobs_total", "Jobs run, by task and outcome", ["task", "outcome"])
DEAD_LETTERS = Counter("wojia_jobs_dead_letters_total", "Jobs that went to dead letter", ["task"])


class PermanentJobError(Exception):
    """Raised by a task when retrying cannot help: the job goes straight to dead letter."""


def backoff_s(attempt: int, *, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): exponential, capped, jittered
    over the upper half so retries of many jobs that failed together spread out."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return float(ceiling / 2 + rand() * ceiling / 2)


def max_attempts(task_name: str) -> int:
    task = broker.find_task(task_name)
    if task is not None and "max_retries" in task.labels:
        return 1 + int(task.labels["max_retries"])
    if task is not None and task.labels.get("retry_on_error") is False:
        return 1
    return get_jobs_settings().max_attempts


def _truncate(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _claim(job_id: str) -> tuple[int, str, dict[str, Any], str | None] | None:
    s = get_jobs_settings()
    now = utcnow()
    async with sessionmaker()() as session:
        row = (
            await session.exec(
                sa.update(_TABLE)
                .where(
                    C.id == job_id,
                    C.status.in_([JobStatus.pending, JobStatus.retry]),
                    C.due_at <= now + dt.timedelta(seconds=1),
                )
                .values(
                    status=JobStatus.running,
                    attempts=C.attempts + 1,
                    started_at=now,
                    lease_until=now + dt.timedelta(seconds=s.lease_s),
                )
                .returning(C.attempts, C.task_name, C.arguments, C.schedule)
            )
        ).first()
        await session.commit()
    if row is None:
        return None
    return int(row[0]), str(row[1]), dict(row[2] or {}), row[3]


async def _renew(job_id: str, attempt: int) -> None:
    lease = get_jobs_settings().lease_s
    while True:
        await asyncio.sleep(lease / 3)
        try:
            async with sessionmaker()() as session:
                await session.exec(
                    sa.update(_TABLE)
                    .where(C.id == job_id, C.attempts == attempt, C.status == JobStatus.running)
                    .values(lease_until=utcnow() + dt.timedelta(seconds=lease))
                )
                await session.commit()
        except Exception as exc:  # the database is away: the lease may lapse; the job stays at-least-once
            log.warning("job %s: renewing its lease failed (%s)", job_id, exc)


async def _write_done(items: list[tuple[str, int]]) -> None:
    async with sessionmaker()() as session:
        await session.exec(
            sa.update(_TABLE)
            .where(sa.tuple_(C.id, C.attempts).in_(items), C.status == JobStatus.running)
            .values(status=JobStatus.done, finished_at=utcnow(), lease_until=None, last_error=None)
        )
        await session.commit()


_completions = _Batcher("completions", _write_done)


async def flush_completions() -> None:
    await _completions.flush()


async def _record_schedule(schedule: str, *, status: str, error: str | None) -> None:
    now = utcnow()
    values: dict[str, Any] = {"last_finished_at": now, "last_status": status}
    if error is not None:
        values |= {"last_failed_at": now, "last_error": error}
    try:
        async with sessionmaker()() as session:
            await session.exec(sa.update(_SCHED).where(_SCHED.c.name == schedule).values(**values))
            await session.commit()
    except Exception as exc:
        log.warning("schedule %s: recording its run failed (%s)", schedule, exc)


async def _fail(
    job_id: str, attempt: int, task_name: str, error: str, *, permanent: bool, schedule: str | None
) -> str:
    s = get_jobs_settings()
    limit = max_attempts(task_name)
    dead = permanent or attempt >= limit
    now = utcnow()
    values: dict[str, Any] = {"last_error": _truncate(error), "lease_until": None, "dispatched_at": None}
    delay = 0.0
    if dead:
        values |= {"status": JobStatus.dead, "finished_at": now}
    else:
        delay = backoff_s(attempt, base=s.retry_base_s, cap=s.retry_cap_s)
        values |= {"status": JobStatus.retry, "due_at": now + dt.timedelta(seconds=delay)}
    async with sessionmaker()() as session:
        await session.exec(
            sa.update(_TABLE)
            .where(C.id == job_id, C.attempts == attempt, C.status == JobStatus.running)
            .values(**values)
        )
        await session.commit()
    if dead:
        DEAD_LETTERS.labels(task_name).inc()
        log.error("job %s (%s) is dead after %d attempts: %s", job_id, task_name, attempt, error)
    else:
        log.warning(
            "job %s (%s) attempt %d/%d failed: %s; next in %.1f s",
            job_id,
            task_name,
            attempt,
            limit,
            error,
            delay,
        )
        _retry_in_process(job_id, delay)
    if schedule is not None:
        await _record_schedule(schedule, status="dead" if dead else "retry", error=_truncate(error))
    return "dead" if dead else "retry"


_timers: set[asyncio.Task[None]] = set()


def _retry_in_process(job_id: str, delay: float) -> None:
    """Wake the job up here when its backoff ends (the relay does it anyway if this process dies)."""
    if delay > 300:
        return

    async def later() -> None:
        await asyncio.sleep(delay)
        await send([job_id])

    t = asyncio.get_running_loop().create_task(later())
    _timers.add(t)
    t.add_done_callback(_timers.discard)


def _call_arguments(func: Callable[..., Any], job_id: str, arguments: dict[str, Any]) -> dict[str, Any]:
    sig = inspect.signature(func)
    kwargs = dict(arguments)
    if "outbox_id" in sig.parameters:
        kwargs["outbox_id"] = job_id
    sig.bind(**kwargs)  # TypeError: the payload does not fit the task
    return kwargs


async def execute(job_id: str) -> str:
    """Run one job if it is due and not in hand; returns the outcome (``skipped`` if not claimed)."""
    claimed = await _claim(job_id)
    if claimed is None:
        return "skipped"
    attempt, task_name, arguments, schedule = claimed
    task = broker.find_task(task_name)
    if task is None or task_name == RUN_TASK:
        JOBS.labels(task_name, "dead").inc()
        return await _fail(
            job_id, attempt, task_name, f"no task named {task_name}", permanent=True, schedule=schedule
        )
    if attempt > max_attempts(task_name):
        # Its earlier attempts never came back (each one killed its worker).
        JOBS.labels(task_name, "dead").inc()
        return await _fail(
            job_id,
            attempt,
            task_name,
            "its worker stopped during every attempt",
            permanent=True,
            schedule=schedule,
        )
    try:
        kwargs = _call_arguments(task.original_func, job_id, arguments)
    except TypeError as exc:
        JOBS.labels(task_name, "dead").inc()
        return await _fail(
            job_id, attempt, task_name, f"arguments do not fit: {exc}", permanent=True, schedule=schedule
        )
    renew = asyncio.create_task(_renew(job_id, attempt))
    try:
        await task.original_func(**kwargs)
    except Exception as exc:
        renew.cancel()
        JOBS.labels(task_name, "failed").inc()
        error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, PermanentJobError):
            log.debug("job %s failed", job_id, exc_info=True)
        return await _fail(
            job_id, attempt, task_name, error, permanent=isinstance(exc, PermanentJobError), schedule=schedule
        )
    finally:
        renew.cancel()
    JOBS.labels(task_name, "done").inc()
    _completions.add([(job_id, attempt)])
    if schedule is not None:
        await _record_schedule(schedule, status="done", error=None)
    return "done"


@broker.task(task_name=RUN_TASK)
async def run_job(outbox_id: str) -> str:
    return await execute(outbox_id)


@broker.task(task_name="app.ping")
async def ping(token: str) -> str:
    """Liveness probe of the job pipeline: a worker that runs it leaves ``jobs:pong:<token>`` in Redis."""
    from app_api.core.redis import get_redis

    await (await get_redis()).set(f"jobs:pong:{token}", b"1", ex=300)
    return token
