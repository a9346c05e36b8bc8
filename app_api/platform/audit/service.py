from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import write_batch
from app_api.core.db import utcnow
from app_api.core.logging import request_id_var
from app_api.platform.audit.models import GENESIS, AuditEvent, AuditHead

_PENDING = "audit_pending"


def _digest(
    prev_hash: str,
    seq: int,
    at: dt.datetime,
    action: str,
    actor_id: str | None,
    subject_type: str | None,
    subject_id: str | None,
    data: dict[str, Any],
) -> str:
    payload = json.dumps(
        [
            prev_hash,
            seq,
            at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            action,
            actor_id,
            subject_type,
            subject_id,
            data,
        ],
        ensure_ascii=False,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


async def record(
    session: AsyncSession,
    *,
    action: str,
    actor_id: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Queue an audit entry; it joins the chain when (and only if) the transaction commits."""
    session.sync_session.info.setdefault(_PENDING, []).append(
        {
            "at": utcnow(),
            "action": action,
            "actor_id": actor_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "data": json.loads(json.dumps(data or {}, ensure_ascii=False, default=str)),
            "request_id": request_id_var.get(),
        }
    )


_HEAD: sa.Table = AuditHead.__table__  # type: ignore[attr-defined]
# Core statements on the tables, built once (their compiled form is cached by the engine): an
# ORM-enabled UPDATE would re-evaluate the identity map.
_RESERVE = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + sa.bindparam("n_events", type_=sa.BigInteger), updated_at=sa.bindparam("now"))
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
_EVENTS: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]
_LINK = sa.update(_HEAD).where(_HEAD.c.id == 1).values(hash=sa.bindparam("last_hash"))


@write_batch.contribute
def _append_pending(session: Session) -> write_batch.Contribution | None:
    """At the commit: the queued entries join the chain. The head row's update reserves their
    sequence numbers and returns the last hash (its lock, held to the commit, orders concurrent
    appends); the entries and the head's new hash are written with the unit of work's other queued
    rows (on PostgreSQL, one statement)."""
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return None
    n = len(pending)
    row = session.connection().execute(_RESERVE, {"n_events": n, "now": utcnow()}).first()
    if row is None:
        raise RuntimeError("audit head row missing: run the migrations")
    last_seq, prev = int(row[0]) - n, str(row[1])
    events: list[tuple[sa.Table, dict[str, Any]]] = []
    for i, e in enumerate(pending, start=1):
        seq = last_seq + i
        h = _digest(
            prev, seq, e["at"], e["action"], e["actor_id"], e["subject_type"], e["subject_id"], e["data"]
        )
        events.append((_EVENTS, {"seq": seq, "prev_hash": prev, "hash": h, **e}))
        prev = h
    return events, _LINK, {"last_hash": prev}


# after_soft_rollback with the outermost transaction: "after_rollback" also fires when a SAVEPOINT
# rolls back, which would drop what was queued before it (``app_api.core.db.savepoint`` drops what
# was queued inside).
@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


@dataclass
class ChainReport:
    checked: int
    first_broken_seq: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.first_broken_seq is None


async def verify_chain(session: AsyncSession, *, batch: int = 5000) -> ChainReport:
    """Walk the chain in order; name the first row whose hash or link does not hold."""
    prev, expected_seq, checked = GENESIS, 1, 0
    last = 0
    while True:
        rows = (
            await session.exec(
                select(AuditEvent)
                .where(col(AuditEvent.seq) > last)
                .order_by(col(AuditEvent.seq))
                .limit(batch)
            )
        ).all()
        if not rows:
            break
        for ev in rows:
            if ev.seq != expected_seq:
                return ChainReport(checked, expected_seq, f"第 {expected_seq} 条记录缺失")
            if ev.prev_hash != prev:
                return ChainReport(checked, ev.seq, "与上一条记录的链接不符")
            h = _digest(
                ev.prev_hash, ev.seq, ev.at, ev.action, ev.actor_id, ev.subject_type, ev.subject_id, ev.data
            )
            if h != ev.hash:
                return ChainReport(checked, ev.seq, "记录内容与哈希不符（已被篡改）")
            prev, expected_seq, checked, last = ev.hash, ev.seq + 1, checked + 1, ev.seq
    head = await session.get(AuditHead, 1)
    if head is not None and (head.seq != checked or head.hash != prev):
        return ChainReport(
            checked, checked + 1 if head.seq > checked else head.seq, "链尾与记录不符（记录被删除）"
        )
    return ChainReport(checked, None, None)
