from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import write_batch
from app_api.core.db import json_stored, utcnow
from app_api.core.logging import request_id_var
from app_api.platform.audit.models import GENESIS, AuditEvent, AuditHead

_PENDING = "audit_pending"


def _said(
    at: dt.datetime,
    action: str,
    actor_id: str | None,
    subject_type: str | None,
    subject_id: str | None,
    data: dict[str, Any],
) -> list[Any]:
    """What an entry says, in the order its digests take it."""
    return [
        at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        action,
        actor_id,
        subject_type,
        subject_id,
        data,
    ]


def _digest(prev_hash: str, seq: int, said: list[Any]) -> str:
    """An entry's hash in the chain's first form (entries without ``content_hash``): its place and
    what it says in one digest, made under the head's lock."""
    return _sha256_json([prev_hash, seq, *said])


def _content(said: list[Any]) -> str:
    """The digest of what an entry says, made when it is recorded (outside the head's lock)."""
    return _sha256_json(said)


def _link(prev_hash: str, seq: int, content_hash: str) -> str:
    """An entry's hash: its content's digest at its place after the previous entry. The same
    formula runs in SQL (``_link_sql``) when PostgreSQL links the entries in the commit statement."""
    return hashlib.sha256(f"{prev_hash}:{seq}:{content_hash}".encode()).hexdigest()


def _sha256_json(value: list[Any]) -> str:
    payload = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
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
    at = utcnow()
    # The data as the JSON column will give it back (what the chain's check digests again).
    stored = json_stored(data or {}, default=str)
    session.sync_session.info.setdefault(_PENDING, []).append(
        {
            "at": at,
            "action": action,
            "actor_id": actor_id,
            "subject_type": subject_type,
            "subject_id": subject_id,
            "data": stored,
            "request_id": request_id_var.get(),
            "content_hash": _content(_said(at, action, actor_id, subject_type, subject_id, stored)),
        }
    )


_HEAD: sa.Table = AuditHead.__table__  # type: ignore[attr-defined]
_EVENTS: sa.Table = AuditEvent.__table__  # type: ignore[attr-defined]
# Core statements on the tables, built once (their compiled form is cached by the engine): an
# ORM-enabled UPDATE would re-evaluate the identity map.
_RESERVE = (
    sa.update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + sa.bindparam("n_events", type_=sa.BigInteger), updated_at=sa.bindparam("now"))
    .returning(_HEAD.c.seq, _HEAD.c.hash)
)
_LINK = sa.update(_HEAD).where(_HEAD.c.id == 1).values(hash=sa.bindparam("last_hash"))
# An entry's queued fields (the rest, its place in the chain, is given when it is linked).
_FIELDS = ("at", "action", "actor_id", "subject_type", "subject_id", "data", "request_id", "content_hash")
# Up to this many entries in one transaction PostgreSQL links them in the commit statement; beyond
# it (bulk work, rare) the head is reserved first and Python links them (the statement's size
# grows with the entries).
_IN_STATEMENT = 16


def _link_sql(prev_hash: Any, seq: Any, content_hash: Any) -> Any:
    """``_link`` in PostgreSQL: hex(sha256(prev_hash || ':' || seq || ':' || content_hash))."""
    colon = sa.literal_column("':'", sa.Text)
    joined = sa.func.concat(prev_hash, colon, sa.cast(seq, sa.Text), colon, content_hash)
    digest = sa.func.sha256(sa.func.convert_to(joined, sa.literal_column("'UTF8'")))
    return sa.func.encode(digest, sa.literal_column("'hex'"), type_=sa.String)


@lru_cache(maxsize=_IN_STATEMENT)
def _chained(n: int) -> sa.Update:
    """The closing statement that appends ``n`` entries on PostgreSQL: the head row locked (``FOR
    UPDATE``, which under READ COMMITTED waits for an earlier appender and then reads its tip),
    each entry linked to the one before by ``_link_sql`` and inserted, and the head moved to the
    last. The unit of work's other queued rows join it as further CTEs (``write_batch``), so the
    lock is taken by the transaction's last statement and held only to its commit. Parameters
    ``au<i>_<field>`` for each entry and ``au_now``."""
    tip = sa.select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update().cte("au_head")
    # The first link reads the tip as scalars: one row even if the head row were missing (NULLs,
    # which the entries' NOT NULL columns refuse), so entries cannot vanish without an error.
    last_seq: Any = sa.select(tip.c.seq).scalar_subquery()
    last_hash: Any = sa.select(tip.c.hash).scalar_subquery()
    ctes: list[Any] = [tip]
    inserts: list[Any] = []
    for i in range(n):
        given = {
            f: sa.cast(sa.bindparam(f"au{i}_{f}", type_=_EVENTS.c[f].type), _EVENTS.c[f].type)
            for f in _FIELDS
        }
        seq = last_seq + 1
        link = sa.select(
            seq.label("seq"),
            last_hash.label("prev_hash"),
            _link_sql(last_hash, seq, given["content_hash"]).label("hash"),
        ).cte(f"au_l{i}")
        row = sa.select(link.c.seq, link.c.prev_hash, link.c.hash, *given.values())
        inserts.append(
            sa.insert(_EVENTS).from_select(["seq", "prev_hash", "hash", *_FIELDS], row).cte(f"au_e{i}")
        )
        ctes.append(link)
        last_seq, last_hash = link.c.seq, link.c.hash
    now = sa.bindparam("au_now", type_=_HEAD.c.updated_at.type)
    # The last link as scalars, not a FROM item: the UPDATE's only row source stays the head.
    head = (
        sa.update(_HEAD)
        .where(_HEAD.c.id == 1)
        .values(
            seq=sa.select(last_seq).scalar_subquery(),
            hash=sa.select(last_hash).scalar_subquery(),
            updated_at=now,
        )
    )
    return head.add_cte(*ctes, *inserts)


@write_batch.contribute
def _append_pending(session: Session) -> write_batch.Contribution | None:
    """At the commit: the queued entries join the chain, written with the unit of work's other
    queued rows. On PostgreSQL (up to ``_IN_STATEMENT`` entries) the commit statement itself locks
    the head, links them and moves it (``_chained``): no statement of its own. Otherwise the head
    row's update reserves their sequence numbers and returns the last hash (its lock, held to the
    commit, orders concurrent appends) and they are linked here."""
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return None
    n = len(pending)
    if n <= _IN_STATEMENT and session.get_bind().dialect.name == "postgresql":
        params: dict[str, Any] = {"au_now": utcnow()}
        for i, e in enumerate(pending):
            params.update({f"au{i}_{f}": e[f] for f in _FIELDS})
        return [], _chained(n), params
    row = session.connection().execute(_RESERVE, {"n_events": n, "now": utcnow()}).first()
    if row is None:
        raise RuntimeError("audit head row missing: run the migrations")
    last_seq, prev = int(row[0]) - n, str(row[1])
    events: list[tuple[sa.Table, dict[str, Any]]] = []
    for i, e in enumerate(pending, start=1):
        seq = last_seq + i
        h = _link(prev, seq, e["content_hash"])
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
            said = _said(ev.at, ev.action, ev.actor_id, ev.subject_type, ev.subject_id, ev.data)
            if ev.content_hash is None:
                h = _digest(ev.prev_hash, ev.seq, said)
            else:
                content = _content(said)
                h = _link(ev.prev_hash, ev.seq, content) if content == ev.content_hash else ""
            if h != ev.hash:
                return ChainReport(checked, ev.seq, "记录内容与哈希不符（已被篡改）")
            prev, expected_seq, checked, last = ev.hash, ev.seq + 1, checked + 1, ev.seq
    head = await session.get(AuditHead, 1)
    if head is not None and (head.seq != checked or head.hash != prev):
        return ChainReport(
            checked, checked + 1 if head.seq > checked else head.seq, "链尾与记录不符（记录被删除）"
        )
    return ChainReport(checked, None, None)
