"""The transactional outbox: every job is a row written in the transaction that asks for it.

Delivery guarantee: **at-least-once, with idempotent handlers**. The row, not the broker, is the
truth; a message on the broker only wakes a worker up.

1. ``enqueue()`` writes an ``app_outbox`` row (``pending``) in the caller's transaction. A rolled-back
   transaction leaves nothing.
2. After the commit, the process sends ``app.run_job(outbox_id)`` to the broker and marks the rows
   dispatched in batches a moment later (one UPDATE for many requests, off the request's path).
3. A worker runs the job (``app_api.core.jobs.runner``): it claims the row with a compare-and-set
   (``pending``/``retry`` and due -> ``running``, attempt + 1, a lease it renews while it runs), calls
   the task's function, and records ``done`` only after the function returned. A failure waits out an
   exponential backoff (``retry``) and, after the task's attempts, goes to ``dead`` for an admin.
4. The relay (``relay()``, every few seconds in every process that runs the jobs loop) sends again
   what is not done: rows never sent (the process died between commit and send), rows sent but not
   started after ``resend_after_s`` (the message was lost: Redis wiped, a consumer group gone), retries
   whose backoff ended, and running rows whose lease ran out (their worker died). It claims what it
   sends with a conditional UPDATE (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two relays never send
   one row twice in a round, and the runner's claim makes a duplicated message a no-op.

So Redis may lose every message: PostgreSQL still holds every job that is not done.

A Redis that lost its data (restarted empty, flushed, failed over to an empty replica) is noticed
by the relay at its next round rather than ``resend_after_s`` later: Redis holds an epoch key
(``wojia:jobs:epoch``, its planting time and a random id) that every relay reads each round, and
plants again when it is missing. A process that finds it missing or changed since its last round
sends again, at once, every waiting job dispatched before the new epoch was planted (those went to
the Redis that was lost; a job sent to the new one as well runs once all the same).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import write_batch
from app_api.core.db import new_id, sessionmaker, utcnow
from app_api.core.jobs.broker import broker
from app_api.core.jobs.models import JobStatus, OutboxMessage
from app_api.core.jobs.settings import get_jobs_settings

log = logging.getLogger(__name__)
_KEY = "outbox_written"
_READY = "outbox_ready"
_TABLE: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]
C = _TABLE.c
RUN_TASK = "app.run_job"
# A row committed but not yet sent is left to the committing process for this long.
SEND_GRACE_S = 2.0


async def enqueue(
    session: AsyncSession, task_name: str, /, *, _job_id: str | None = None, **kwargs: Any
) -> str:
    """Write a job in the session's transaction; it is sent when (and only if) the transaction commits."""
    job_id = _job_id or new_id()
    if write_batch.deferring(session):
        # Queued as a plain row for the commit (no ORM object to build).
        now = utcnow()
        row = {**_ROW_DEFAULTS, "id": job_id, "task_name": task_name, "arguments": kwargs}
        write_batch.queue(session, _TABLE, [{**row, "created_at": now, "due_at": now}])
    else:
        session.add(OutboxMessage(id=job_id, task_name=task_name, arguments=kwargs))
    _after_commit(session, [job_id])
    return job_id


# A new job's row, as ``OutboxMessage``'s defaults make it (``enqueue`` fills the rest).
_ROW_DEFAULTS: dict[str, Any] = {
    "status": JobStatus.pending.value,
    "dispatched_at": None,
    "lease_until": None,
    "started_at": None,
    "finished_at": None,
    "attempts": 0,
    "last_error": None,
    "schedule": None,
}


def _after_commit(session: AsyncSession, ids: Iterable[str]) -> None:
    session.sync_session.info.setdefault(_KEY, []).extend(ids)


@event.listens_for(Session, "after_commit")
def _mark_ready(session: Session) -> None:
    ids = session.info.pop(_KEY, [])
    if ids:
        session.info.setdefault(_READY, []).extend(ids)


# after_soft_rollback with the outermost transaction: "after_rollback" also fires when a SAVEPOINT
# rolls back, which would drop what was queued before it (``app_api.core.db.savepoint`` drops what
# was queued inside).
@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_KEY, None)


async def send(ids: Iterable[str]) -> list[str]:
    """Send a wake-up message for each job; returns the ids the broker accepted."""
    task = broker.find_task(RUN_TASK)
    if task is None:  # pragma: no cover - the runner module is part of the jobs component
        raise RuntimeError("the job runner is not registered")
    sent = []
    for job_id in ids:
        try:
            await task.kiq(job_id)
            sent.append(job_id)
        except Exception as exc:
            # The row stays unsent: the relay sends it again.
            log.warning("outbox: sending job %s failed (%s); the relay will resend it", job_id, exc)
            break  # the broker is down: do not wait out a timeout per job
    return sent


class _Batcher:
    """Collects ids and writes them in one UPDATE every ``every_s`` (off the request's path)."""

    def __init__(self, name: str, write: Any, every_s: float = 0.2) -> None:
        self.name = name
        self._write = write
        self.every_s = every_s
        self._pending: set[Any] = set()
        self._task: asyncio.Task[None] | None = None

    def add(self, items: Iterable[Any]) -> None:
        self._pending.update(items)
        if self._task is None and self._pending:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def flush(self) -> None:
        while self._pending:
            batch = [self._pending.pop() for _ in range(min(len(self._pending), 500))]
            try:
                await self._write(batch)
            except Exception as exc:
                # What was not written is recovered by the relay (at-least-once).
                log.warning("outbox: %s of %d jobs not recorded (%s)", self.name, len(batch), exc)
                return

    async def _loop(self) -> None:
        try:
            while self._pending:
                await asyncio.sleep(self.every_s)
                await self.flush()
        finally:
            self._task = None


async def _write_dispatched(ids: list[str]) -> None:
    async with sessionmaker()() as s:
        await s.exec(
            sa.update(_TABLE)
            .where(C.id.in_(ids), C.status == JobStatus.pending, C.dispatched_at.is_(None))
            .values(dispatched_at=utcnow())
        )
        await s.commit()


_dispatched = _Batcher("dispatch marks", _write_dispatched)


async def flush_marks() -> None:
    """Write every pending batch now (also called at shutdown)."""
    from app_api.core.jobs.runner import flush_completions

    await _dispatched.flush()
    await flush_completions()


async def dispatch_pending_after_commit(session: AsyncSession) -> None:
    ready: list[str] = session.sync_session.info.pop(_READY, [])
    if ready:
        _dispatched.add(await send(ready))


def _relay_candidates(now: dt.datetime, emptied_before: dt.datetime | None = None) -> sa.Select[Any]:
    s = get_jobs_settings()
    waiting = C.status.in_([JobStatus.pending, JobStatus.retry])
    never_sent = sa.and_(
        waiting, C.dispatched_at.is_(None), C.due_at <= now - dt.timedelta(seconds=SEND_GRACE_S)
    )
    lost_before = now - dt.timedelta(seconds=s.resend_after_s)
    if emptied_before is not None:
        lost_before = max(lost_before, min(emptied_before, now))
    lost = sa.and_(waiting, C.due_at <= now, C.dispatched_at < lost_before)
    orphaned = sa.and_(C.status == JobStatus.running, C.lease_until < now)
    return (
        sa.select(C.id)
        .where(sa.or_(never_sent, lost, orphaned))
        .order_by(C.due_at)
        .limit(s.relay_batch)
        .with_for_update(skip_locked=True)
    )


EPOCH_KEY = "wojia:jobs:epoch"
# Jobs dispatched up to this long after a new epoch was planted are sent again too (clocks of the
# processes differ a little; a job sent twice runs once).
EPOCH_MARGIN = dt.timedelta(seconds=2)
_epoch_seen: bytes | None = None  # the epoch this process found at its last round
_emptied_before: dt.datetime | None = None  # jobs dispatched before this went to a lost Redis


async def _broker_emptied() -> dt.datetime | None:
    """When the broker's Redis was found emptied since this process's last round: the moment its
    new epoch was planted (jobs dispatched before it may be lost), else None. One round trip."""
    global _epoch_seen, _emptied_before
    from app_api.core.settings import get_settings

    if get_settings().embedded_jobs:
        return None  # the in-process broker is lost only with the process itself
    from app_api.core.redis import get_redis

    r = await get_redis()
    mine = f"{utcnow().isoformat()}|{new_id()}".encode()
    try:
        async with r.pipeline(transaction=False) as pipe:
            pipe.set(EPOCH_KEY, mine, nx=True)
            pipe.get(EPOCH_KEY)
            planted, current = await pipe.execute()
    except Exception as exc:  # Redis down: the send fails too, and the check waits for its return
        log.debug("outbox relay: reading the broker's epoch failed: %s", exc)
        return _emptied_before
    if _epoch_seen is not None and current != _epoch_seen and _emptied_before is None:
        try:
            _emptied_before = dt.datetime.fromisoformat(current.split(b"|")[0].decode()) + EPOCH_MARGIN
        except (ValueError, AttributeError):
            _emptied_before = utcnow() + EPOCH_MARGIN
        log.warning(
            "outbox relay: the job broker's Redis lost its data (%s); sending again every job "
            "dispatched before %s",
            "epoch planted here" if planted else "a new epoch",
            _emptied_before.isoformat(timespec="seconds"),
        )
    _epoch_seen = current
    return _emptied_before


async def relay(now: dt.datetime | None = None) -> int:
    """Send again every job that is not done and not in hand; returns how many were sent."""
    global _emptied_before
    now = now or utcnow()
    emptied_before = await _broker_emptied()
    async with sessionmaker()() as s:
        ids = [
            r[0]
            for r in (
                await s.exec(
                    sa.update(_TABLE)
                    .where(C.id.in_(_relay_candidates(now, emptied_before).scalar_subquery()))
                    .values(
                        dispatched_at=now,
                        # A running job whose lease ran out lost its worker: it waits again.
                        status=sa.case(
                            (C.status == JobStatus.running, JobStatus.pending.value), else_=C.status
                        ),
                        lease_until=None,
                    )
                    .returning(C.id)
                )
            ).all()
        ]
        await s.commit()
    if emptied_before is not None and len(ids) < get_jobs_settings().relay_batch:
        _emptied_before = None  # all of them claimed: the next rounds are ordinary
    if ids:
        log.info("outbox relay: sending %d jobs again", len(ids))
    return len(await send(ids))
