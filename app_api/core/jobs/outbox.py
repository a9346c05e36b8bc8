"""Transactional outbox: a job is sent to the broker exactly when its transaction commits.

``enqueue()`` writes an ``app_outbox`` row in the caller's transaction. After the commit the
request (or ``session_scope``) sends the jobs it wrote straight from memory, and their rows are
marked dispatched in batches a moment later (one UPDATE for many requests, off the request's path).
If the process dies in between, ``relay`` (every minute) sends rows left unmarked for 30 s.
A rolled-back transaction sends nothing.
Delivery is at-least-once at the broker, so tasks are written to be idempotent (they check the
state they change, or dedupe on the ``outbox_id`` keyword they receive).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import sessionmaker, utcnow
from app_api.core.jobs.broker import broker
from app_api.core.jobs.models import OutboxMessage

log = logging.getLogger(__name__)
_KEY = "outbox_written"
_READY = "outbox_ready"
_TABLE: sa.Table = OutboxMessage.__table__  # type: ignore[attr-defined]


async def enqueue(session: AsyncSession, task_name: str, /, **kwargs: Any) -> str:
    msg = OutboxMessage(task_name=task_name, arguments=kwargs)
    session.add(msg)
    session.sync_session.info.setdefault(_KEY, []).append((msg.id, task_name, kwargs))
    return msg.id


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


async def _send(rows: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    sent = []
    for msg_id, task_name, arguments in rows:
        task = broker.find_task(task_name)
        if task is None:
            log.error("outbox: no task named %s (message %s)", task_name, msg_id)
            continue
        try:
            await task.kicker().with_labels(outbox_id=msg_id).kiq(outbox_id=msg_id, **arguments)
            sent.append(msg_id)
        except Exception:
            log.exception("outbox: sending %s failed; the relay will retry", msg_id)
    return sent


_to_mark: set[str] = set()
_marker: asyncio.Task[None] | None = None
MARK_EVERY_S = 0.2


async def _mark(ids: list[str]) -> None:
    async with sessionmaker()() as s:
        await s.exec(
            sa.update(_TABLE)
            .where(_TABLE.c.id.in_(ids), _TABLE.c.dispatched_at.is_(None))
            .values(dispatched_at=utcnow(), attempts=_TABLE.c.attempts + 1)
        )
        await s.commit()


async def flush_marks() -> None:
    """Mark every sent message dispatched now (also called at shutdown)."""
    while _to_mark:
        batch = [_to_mark.pop() for _ in range(min(len(_to_mark), 500))]
        try:
            await _mark(batch)
        except Exception:
            # Unmarked rows are only re-sent by the relay: delivery stays at-least-once.
            log.exception("outbox: marking %d messages dispatched failed", len(batch))
            return


async def _marker_loop() -> None:
    global _marker
    try:
        while _to_mark:
            await asyncio.sleep(MARK_EVERY_S)
            await flush_marks()
    finally:
        _marker = None


def _schedule_mark(ids: list[str]) -> None:
    global _marker
    _to_mark.update(ids)
    if _marker is None:
        _marker = asyncio.get_running_loop().create_task(_marker_loop())


async def dispatch(ids: list[str]) -> int:
    """Send the listed rows that are still undispatched (the relay's path: it reads them back)."""
    if not ids:
        return 0
    async with sessionmaker()() as s:
        rows = (
            await s.exec(
                select(OutboxMessage).where(
                    col(OutboxMessage.id).in_(ids), col(OutboxMessage.dispatched_at).is_(None)
                )
            )
        ).all()
    sent = await _send([(r.id, r.task_name, r.arguments) for r in rows])
    if sent:
        await _mark(sent)
    return len(sent)


async def dispatch_pending_after_commit(session: AsyncSession) -> None:
    ready: list[tuple[str, str, dict[str, Any]]] = session.sync_session.info.pop(_READY, [])
    if ready:
        _schedule_mark(await _send(ready))


@broker.task(task_name="app.outbox_relay", schedule=[{"cron": "* * * * *"}])
async def relay(older_than_s: int = 30) -> int:
    """Send outbox rows whose transaction committed but whose dispatch never happened."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    async with sessionmaker()() as s:
        ids = list(
            (
                await s.exec(
                    select(OutboxMessage.id)
                    .where(col(OutboxMessage.dispatched_at).is_(None), col(OutboxMessage.created_at) < cutoff)
                    .limit(500)
                )
            ).all()
        )
    return await dispatch(ids)


@broker.task(task_name="app.ping")
async def ping(token: str) -> str:
    """Liveness probe of the job pipeline: a worker that runs it leaves ``jobs:pong:<token>`` in Redis."""
    from app_api.core.redis import get_redis

    await (await get_redis()).set(f"jobs:pong:{token}", b"1", ex=300)
    return token
