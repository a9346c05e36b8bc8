"""Transactional outbox: a job is sent to the broker exactly when its transaction commits.

``enqueue()`` writes an ``app_outbox`` row in the caller's transaction. After the commit the
request (or ``session_scope``) dispatches the rows it wrote; if the process dies in between,
``relay`` (every 30 s) sends rows left undispatched. A rolled-back transaction sends nothing.
Delivery is at-least-once at the broker, so tasks are written to be idempotent (they check the
state they change, or dedupe on the ``outbox_id`` keyword they receive).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.db import sessionmaker, utcnow
from app_api.jobs.broker import broker
from app_api.jobs.models import OutboxMessage

log = logging.getLogger(__name__)
_KEY = "outbox_written"
_READY = "outbox_ready"


async def enqueue(session: AsyncSession, task_name: str, /, **kwargs: Any) -> str:
    msg = OutboxMessage(task_name=task_name, arguments=kwargs)
    session.add(msg)
    session.sync_session.info.setdefault(_KEY, []).append(msg.id)
    return msg.id


@event.listens_for(Session, "after_commit")
def _mark_ready(session: Session) -> None:
    ids = session.info.pop(_KEY, [])
    if ids:
        session.info.setdefault(_READY, []).extend(ids)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_KEY, None)


async def _send(rows: list[OutboxMessage]) -> list[str]:
    sent = []
    for row in rows:
        task = broker.find_task(row.task_name)
        if task is None:
            log.error("outbox: no task named %s (message %s)", row.task_name, row.id)
            continue
        try:
            await task.kicker().with_labels(outbox_id=row.id).kiq(outbox_id=row.id, **row.arguments)
            sent.append(row.id)
        except Exception:
            log.exception("outbox: sending %s failed; the relay will retry", row.id)
    return sent


async def dispatch(ids: list[str]) -> int:
    if not ids:
        return 0
    async with sessionmaker()() as s:
        rows = list(
            (
                await s.exec(
                    select(OutboxMessage).where(
                        col(OutboxMessage.id).in_(ids), col(OutboxMessage.dispatched_at).is_(None)
                    )
                )
            ).all()
        )
        sent = await _send(rows)
        if sent:
            await s.exec(  # type: ignore[call-overload]
                sa.update(OutboxMessage)
                .where(col(OutboxMessage.id).in_(sent))
                .values(dispatched_at=utcnow(), attempts=OutboxMessage.attempts + 1)
            )
        await s.commit()
        return len(sent)


async def dispatch_pending_after_commit(session: AsyncSession) -> None:
    ids: list[str] = session.sync_session.info.pop(_READY, [])
    if ids:
        await dispatch(ids)


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
    from app_api.redis import get_redis

    await (await get_redis()).set(f"jobs:pong:{token}", b"1", ex=300)
    return token
