"""The audit chain catches tampering; the outbox sends a job only when its transaction commits."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import sqlalchemy as sa

from app_api.core.db import session_scope, sessionmaker
from app_api.core.jobs import broker, outbox
from app_api.platform import audit
from app_api.platform.audit.models import AuditEvent
from tests.conftest import LoginFn

RAN: list[str] = []


@broker.task(task_name="tests.record_run")
async def record_run(marker: str, outbox_id: str | None = None) -> None:
    RAN.append(marker)


async def wait_for(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


async def test_outbox_sends_on_commit_only() -> None:
    async with session_scope() as s:
        await outbox.enqueue(s, "tests.record_run", marker="committed")
        await asyncio.sleep(0.05)
        assert "committed" not in RAN, "must not run before the commit"
    assert await wait_for(lambda: "committed" in RAN)

    with pytest.raises(RuntimeError):
        async with session_scope() as s:
            await outbox.enqueue(s, "tests.record_run", marker="rolled-back")
            raise RuntimeError("business failure")
    await asyncio.sleep(0.2)
    assert "rolled-back" not in RAN
    from sqlmodel import select

    from app_api.core.jobs.models import OutboxMessage

    async def rows() -> list[OutboxMessage]:
        # The run is marked done after the task body returns, in the runner's next batch of marks.
        await outbox.flush_marks()
        async with sessionmaker()() as s:
            q = select(OutboxMessage).where(OutboxMessage.task_name == "tests.record_run")
            return list((await s.exec(q)).all())

    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while [r.status for r in await rows()] != ["done"] and loop.time() < end:
        await asyncio.sleep(0.05)
    found = await rows()
    assert [r.arguments["marker"] for r in found] == ["committed"]
    assert found[0].status == "done" and found[0].attempts == 1


async def test_outbox_relay_sends_rows_left_behind() -> None:
    """A crash between commit and dispatch: the relay finds the row and it runs once."""
    import datetime as dt

    from app_api.core.db import utcnow
    from app_api.core.jobs.models import OutboxMessage

    long_ago = utcnow() - dt.timedelta(minutes=1)
    async with sessionmaker()() as s:
        job = OutboxMessage(
            task_name="tests.record_run", arguments={"marker": "orphan"}, created_at=long_ago, due_at=long_ago
        )
        s.add(job)
        await s.commit()  # committed without dispatch, as if the process died here
    assert await outbox.relay() >= 1
    assert await wait_for(lambda: "orphan" in RAN)
    await outbox.flush_marks()
    assert await outbox.relay() == 0
    await asyncio.sleep(0.1)
    assert RAN.count("orphan") == 1
    async with sessionmaker()() as s:
        row = await s.get(OutboxMessage, job.id)
        assert row is not None and row.status == "done" and row.attempts == 1


async def test_audit_chain_detects_tampering(
    client: httpx.AsyncClient, login: LoginFn, is_postgres: bool
) -> None:
    await login()  # logins are audited
    async with session_scope() as s:
        for i in range(3):
            await audit.record(s, action="tests.event", subject_id=f"t{i}", data={"i": i})
    async with sessionmaker()() as s:
        rep = await audit.verify_chain(s)
        assert rep.ok and rep.checked >= 4
        victim = (await s.exec(sa.select(AuditEvent.seq).where(AuditEvent.subject_id == "t1"))).one()[0]  # type: ignore[call-overload]
    admin = await login(roles=["admin"])
    assert (await client.get("/api/v1/admin/audit/verify", headers=admin)).json()["ok"] is True

    async with sessionmaker()() as s:
        if is_postgres:
            # The database itself refuses to rewrite history...
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                await s.exec(sa.update(AuditEvent).where(AuditEvent.seq == victim).values(data={"i": 99}))  # type: ignore[call-overload]
            await s.rollback()
            # ...so a tamperer with superuser rights must first disable the trigger.
            await s.exec(sa.text("ALTER TABLE app_audit_event DISABLE TRIGGER app_audit_event_append_only"))  # type: ignore[call-overload]
        await s.exec(sa.update(AuditEvent).where(AuditEvent.seq == victim).values(data={"i": 99}))  # type: ignore[call-overload]
        await s.commit()
    try:
        async with sessionmaker()() as s:
            rep = await audit.verify_chain(s)
        assert not rep.ok and rep.first_broken_seq == victim
        r = (await client.get("/api/v1/admin/audit/verify", headers=admin)).json()
        assert r["ok"] is False and r["first_broken_seq"] == victim
    finally:
        async with sessionmaker()() as s:
            await s.exec(sa.update(AuditEvent).where(AuditEvent.seq == victim).values(data={"i": 1}))  # type: ignore[call-overload]
            if is_postgres:
                await s.exec(
                    sa.text("ALTER TABLE app_audit_event ENABLE TRIGGER app_audit_event_append_only")
                )  # type: ignore[call-overload]
            await s.commit()
        async with sessionmaker()() as s:
            assert (await audit.verify_chain(s)).ok


async def test_audit_of_rolled_back_transaction_is_not_chained() -> None:
    with pytest.raises(RuntimeError):
        async with session_scope() as s:
            await audit.record(s, action="tests.never", subject_id="rb")
            raise RuntimeError
    async with sessionmaker()() as s:
        n = (
            await s.exec(
                sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == "tests.never")
            )
        ).one()[0]  # type: ignore[call-overload]
        assert n == 0
        assert (await audit.verify_chain(s)).ok


def test_cli_verify_names_first_broken_row() -> None:
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "app_api.wiring.cli", "audit", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "audit chain intact" in out.stdout


async def test_a_failed_savepoint_drops_only_what_was_queued_inside_it() -> None:
    from app_api.core.db import savepoint

    async with session_scope() as s:
        await audit.record(s, action="test.before_savepoint", subject_id="sp-1")
        await outbox.enqueue(s, "tests.record_run", marker="sp-before")
        with pytest.raises(RuntimeError):
            async with savepoint(s):
                await audit.record(s, action="test.inside_savepoint", subject_id="sp-1")
                await outbox.enqueue(s, "tests.record_run", marker="sp-inside")
                raise RuntimeError("a step that failed")
        await audit.record(s, action="test.after_savepoint", subject_id="sp-1")
    async with sessionmaker()() as s:
        actions = (
            await s.exec(
                sa.select(AuditEvent.action).where(AuditEvent.subject_id == "sp-1").order_by(AuditEvent.seq)
            )  # type: ignore[call-overload]
        ).all()
    assert [a for (a,) in actions] == ["test.before_savepoint", "test.after_savepoint"]
    assert await wait_for(lambda: "sp-before" in RAN)  # sent at the commit, not left to the relay
    await asyncio.sleep(0.1)
    assert "sp-inside" not in RAN


async def test_a_savepoint_that_reads_then_writes_is_not_refused_after_another_writer_commits() -> None:
    """A workbench action reads a row and then writes it inside a savepoint; if another connection
    (a job, a second clerk) commits between the read and the write, the action must still land:
    under SQLite a deferred transaction's snapshot cannot be upgraded and the write failed with
    "database is locked" at once (the supervisor's 回访 answer answered 503 in CI)."""
    from app_api.core.db import savepoint

    probe = sa.table("savepoint_probe", sa.column("id", sa.Integer), sa.column("n", sa.Integer))
    async with sessionmaker()() as s:
        await s.execute(
            sa.text("CREATE TABLE IF NOT EXISTS savepoint_probe (id INTEGER PRIMARY KEY, n INTEGER)")
        )
        await s.execute(sa.delete(probe))
        await s.execute(sa.insert(probe).values(id=1, n=0))
        await s.commit()
    try:
        reader_has_read = asyncio.Event()

        async def other_writer() -> None:
            await reader_has_read.wait()
            async with session_scope() as other:
                await other.execute(sa.update(probe).where(probe.c.id == 1).values(n=probe.c.n + 10))

        writer = asyncio.create_task(other_writer())
        async with session_scope() as s, savepoint(s):
            # FOR UPDATE locks the row under PostgreSQL (as the services do); SQLite ignores it.
            read = sa.select(probe.c.n).where(probe.c.id == 1).with_for_update()
            (n,) = (await s.execute(read)).one()
            reader_has_read.set()
            await asyncio.sleep(0.2)  # the other writer commits now, or waits for this one
            await s.execute(sa.update(probe).where(probe.c.id == 1).values(n=n + 1))
        await asyncio.wait_for(writer, 10)
        async with sessionmaker()() as s:
            (final,) = (await s.execute(sa.select(probe.c.n).where(probe.c.id == 1))).one()
        # Both changes landed; neither overwrote the other.
        assert final == 11
    finally:
        async with sessionmaker()() as s:
            await s.execute(sa.text("DROP TABLE IF EXISTS savepoint_probe"))
            await s.commit()
