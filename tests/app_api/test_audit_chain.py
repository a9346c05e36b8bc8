"""The audit chain as its appenders make it: many transactions at once, the commit statement linking
entries on PostgreSQL, large transactions, entries from before the content digest, odd data."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.platform import audit
from app_api.platform.audit import service
from app_api.platform.audit.models import AuditEvent, AuditHead

pytestmark = pytest.mark.asyncio


async def entries(action: str) -> list[AuditEvent]:
    async with sessionmaker()() as s:
        rows = await s.exec(
            select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.seq))
        )
        return list(rows.all())


async def head() -> AuditHead:
    async with sessionmaker()() as s:
        h = await s.get(AuditHead, 1)
        assert h is not None
        return h


async def verified() -> service.ChainReport:
    async with sessionmaker()() as s:
        return await audit.verify_chain(s)


@asynccontextmanager
async def tampering(is_postgres: bool) -> AsyncIterator[None]:
    """A superuser who switches off the table's append-only trigger (PostgreSQL) to rewrite rows."""
    async with sessionmaker()() as s:
        if is_postgres:
            await s.exec(sa.text("ALTER TABLE app_audit_event DISABLE TRIGGER app_audit_event_append_only"))  # type: ignore[call-overload]
            await s.commit()
    try:
        yield
    finally:
        if is_postgres:
            async with sessionmaker()() as s:
                await s.exec(
                    sa.text("ALTER TABLE app_audit_event ENABLE TRIGGER app_audit_event_append_only")
                )  # type: ignore[call-overload]
                await s.commit()


async def rewrite(seq: int, **values: object) -> None:
    async with sessionmaker()() as s:
        await s.exec(sa.update(AuditEvent).where(col(AuditEvent.seq) == seq).values(**values))  # type: ignore[call-overload]
        await s.commit()


async def test_transactions_appending_at_once_make_one_unbroken_chain() -> None:
    """Thirty requests commit their entries at the same moment (one to three each): every entry is
    in the chain once, in one order, and the chain and its head verify."""
    action = f"tests.at_once.{uuid.uuid4().hex[:8]}"
    start = asyncio.Event()

    async def request(n: int, k: int) -> None:
        async with session_scope() as s:
            for j in range(k):
                await audit.record(s, action=action, subject_id=f"r{n}-{j}", data={"request": n, "entry": j})
            await start.wait()

    tasks = [asyncio.create_task(request(n, n % 3 + 1)) for n in range(30)]
    await asyncio.sleep(0.05)
    start.set()
    await asyncio.gather(*tasks)

    rows = await entries(action)
    assert sorted(r.subject_id or "" for r in rows) == sorted(
        f"r{n}-{j}" for n in range(30) for j in range(n % 3 + 1)
    )
    # A request's entries are consecutive and in the order it recorded them.
    by_request: dict[int, list[int]] = {}
    for r in rows:
        by_request.setdefault(r.data["request"], []).append(r.seq)
    for n, seqs in by_request.items():
        assert seqs == list(range(seqs[0], seqs[0] + n % 3 + 1))
        assert [r.data["entry"] for r in rows if r.data["request"] == n] == list(range(n % 3 + 1))
    assert all(r.content_hash for r in rows)
    report = await verified()
    assert report.ok, report
    tip = await head()
    assert tip.seq == report.checked and tip.seq >= rows[-1].seq


@pytest.mark.parametrize("n", [service._IN_STATEMENT, service._IN_STATEMENT + 1, 60])
async def test_a_transaction_with_many_entries_is_chained_in_order(n: int) -> None:
    """Up to ``_IN_STATEMENT`` entries PostgreSQL links them in the commit statement; past it the
    head is reserved first. Either way the entries are consecutive, in order, and verify."""
    action = f"tests.many.{uuid.uuid4().hex[:8]}"
    async with session_scope() as s:
        for i in range(n):
            await audit.record(s, action=action, subject_id=f"e{i}", data={"i": i})
    rows = await entries(action)
    assert [r.data["i"] for r in rows] == list(range(n))
    assert [r.seq for r in rows] == list(range(rows[0].seq, rows[0].seq + n))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert (await head()).hash == rows[-1].hash
    assert (await verified()).ok


async def test_entries_from_before_the_content_digest_verify_and_are_still_guarded(is_postgres: bool) -> None:
    """A chain whose older entries hash their content with their place (no ``content_hash``) goes
    on with entries that carry it; the check accepts both, and names a rewritten one of either."""
    action = f"tests.legacy.{uuid.uuid4().hex[:8]}"
    # Two entries as the first form wrote them, continuing the chain under the head's lock.
    async with session_scope() as s:
        tip = (await s.exec(select(AuditHead).where(AuditHead.id == 1).with_for_update())).one()
        prev, seq = tip.hash, tip.seq
        for i in range(2):
            seq += 1
            at, data = utcnow(), {"i": i, "名": "旧"}
            h = service._digest(prev, seq, service._said(at, action, "staff-1", "test", f"old{i}", data))
            s.add(
                AuditEvent(
                    seq=seq,
                    at=at,
                    action=action,
                    actor_id="staff-1",
                    subject_type="test",
                    subject_id=f"old{i}",
                    data=data,
                    prev_hash=prev,
                    hash=h,
                )
            )
            prev = h
        tip.seq, tip.hash = seq, prev
        s.add(tip)
    async with session_scope() as s:
        for i in range(2):
            await audit.record(
                s, action=action, actor_id="staff-1", subject_type="test", subject_id=f"new{i}", data={"i": i}
            )
    rows = await entries(action)
    assert [r.content_hash is None for r in rows] == [True, True, False, False]
    assert rows[2].prev_hash == rows[1].hash
    assert (await verified()).ok

    old, new = rows[0], rows[3]
    async with tampering(is_postgres):
        for victim in (old, new):
            await rewrite(victim.seq, data={"i": 99})
            report = await verified()
            assert not report.ok and report.first_broken_seq == victim.seq
            assert report.reason == "记录内容与哈希不符（已被篡改）"
            await rewrite(victim.seq, data=victim.data)
        # A tamperer who also writes the rewritten content's digest is caught by the link.
        forged = service._content(
            service._said(new.at, new.action, new.actor_id, new.subject_type, new.subject_id, {"i": 99})
        )
        await rewrite(new.seq, data={"i": 99}, content_hash=forged)
        report = await verified()
        assert not report.ok and report.first_broken_seq == new.seq
        await rewrite(new.seq, data=new.data, content_hash=new.content_hash)
    assert (await verified()).ok


async def test_data_that_json_cannot_hold_exactly_is_stored_as_the_chain_digests_it() -> None:
    """An integer beyond 64 bits is kept exactly; a float that is not a number (which PostgreSQL's
    JSON refuses) is stored as null. The entry's digest is of what is stored, so the chain verifies."""
    action = f"tests.odd.{uuid.uuid4().hex[:8]}"
    async with session_scope() as s:
        await audit.record(
            s, action=action, data={"big": 2**70, "nan": float("nan"), "inf": float("inf"), 3: "三"}
        )
    (row,) = await entries(action)
    assert row.data == {"big": 2**70, "nan": None, "inf": None, "3": "三"}
    assert (await verified()).ok


async def test_entries_are_never_dropped_without_an_error() -> None:
    """Without the chain's head row (a damaged database) the commit fails and writes nothing, instead
    of committing the work without its audit entries."""
    action = f"tests.headless.{uuid.uuid4().hex[:8]}"
    async with sessionmaker()() as s:
        await s.exec(sa.delete(AuditHead))  # type: ignore[call-overload]
        await audit.record(s, action=action, data={"i": 1})
        with pytest.raises((RuntimeError, sa.exc.IntegrityError)):
            await s.commit()
    assert await entries(action) == []
    assert (await head()).seq >= 0 and (await verified()).ok
