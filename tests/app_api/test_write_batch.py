"""A unit of work that defers its append-only writes (``app_api.core.write_batch``) writes them all at
its commit, in one statement on PostgreSQL, and loses or half-writes nothing: a rollback writes
none of them, a savepoint that rolls back drops only what was queued inside it, a read through the
session sees what was queued, and rows may refer to rows the ORM has not written yet."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import select

from app_api.core import write_batch
from app_api.core.crypto import encrypt_str, lookup_hash
from app_api.core.db import savepoint, session_scope, sessionmaker
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.audit.models import AuditEvent
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.access_log import Actor, record_read
from app_api.platform.datahub.models import DataAccessLog
from tests.conftest import counted_statements as counted


def _account() -> Account:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    return Account(phone_hash=lookup_hash(phone, purpose="phone"), phone_enc=encrypt_str(phone, aad="phone"))


async def _saved_account() -> Account:
    """A resident's account, committed in a transaction of its own."""
    async with session_scope() as s:
        account = _account()
        s.add(account)
    return account


async def _grant(s: Any, account_id: str, purpose: str = "测试授权") -> Consent:
    return await consent.grant(
        s, account_id=account_id, purpose=purpose, scopes=["person.name"], text="同意", flush=False
    )


async def _read(s: Any, account_id: str, consent_id: str) -> None:
    actor = Actor.resident(account_id)
    await record_read(
        s,
        actor=actor,
        subject_account_id=account_id,
        record_type="person",
        purpose="测试授权",
        consent_id=consent_id,
        fields=["person.name"],
        flush=False,
    )


async def _stored(account_id: str) -> tuple[list[Consent], list[DataAccessLog], list[AuditEvent]]:
    async with sessionmaker()() as s:
        consents = list((await s.exec(select(Consent).where(Consent.account_id == account_id))).all())
        reads = list(
            (await s.exec(select(DataAccessLog).where(DataAccessLog.subject_account_id == account_id))).all()
        )
        ids = [c.id for c in consents] + [r.id for r in reads]
        events = list((await s.exec(select(AuditEvent).where(sa.column("subject_id").in_(ids)))).all())
        return consents, reads, events


async def test_a_deferred_unit_of_work_writes_its_rows_at_the_commit_in_one_statement(
    is_postgres: bool,
) -> None:
    """A resident new in this transaction (written by the ORM), a consent and a read under it, each
    with its audit entry: on PostgreSQL the rows, the entries linked into the chain and its new head
    are one statement; every row is there afterwards, in a chain that still verifies."""
    with counted() as statements:
        async with session_scope() as s:
            write_batch.defer(s)
            account = _account()
            s.add(account)  # the consent refers to it: the ORM writes it first at the commit
            c = await _grant(s, account.id)
            # The consent is good for a read in the same transaction, before anything is written.
            assert (
                await consent.require(s, consent_id=c.id, account_id=account.id, purpose="测试授权")
            ).id == c.id
            await _read(s, account.id, c.id)
            assert statements == []  # nothing written yet
    inserts = [st for st in statements if st.startswith(("INSERT", "WITH"))]
    assert any("app_account" in st for st in statements)
    if is_postgres:
        # The account (ORM), then everything else in one statement, the chain's head with it.
        batch = [st for st in statements if "app_consent" in st]
        assert len(batch) == 1 and batch[0].startswith("WITH")
        assert "app_datahub_access" in batch[0] and "app_audit_event" in batch[0]
        assert "UPDATE app_audit_head" in batch[0]
        assert "FOR UPDATE" in batch[0]  # the head's lock, taken by the last statement
        assert len(statements) == 2, statements  # the account, the batch
    else:
        assert len(inserts) >= 3
    consents, reads, events = await _stored(account.id)
    assert [x.id for x in consents] == [c.id]
    assert len(reads) == 1 and reads[0].consent_id == c.id and reads[0].fields == ["person.name"]
    assert {e.action for e in events} == {"consent.granted", "datahub.data_read"}
    async with sessionmaker()() as s:
        report = await audit.verify_chain(s)
    assert report.ok, report


async def test_a_rollback_writes_none_of_the_queued_rows() -> None:
    account = await _saved_account()
    with pytest.raises(RuntimeError):
        async with session_scope() as s:
            write_batch.defer(s)
            c = await _grant(s, account.id)
            await _read(s, account.id, c.id)
            raise RuntimeError("the resident's request failed")
    assert await _stored(account.id) == ([], [], [])
    # The session's next transaction does not defer, and holds nothing from the failed one.
    async with session_scope() as s:
        assert not write_batch.deferring(s)
        assert write_batch.held(s, Consent, c.id) is None


async def test_a_savepoint_that_rolls_back_drops_only_what_was_queued_inside_it() -> None:
    account = await _saved_account()
    async with session_scope() as s:
        write_batch.defer(s)
        kept = await _grant(s, account.id, "保留的授权")
        with pytest.raises(RuntimeError):
            async with savepoint(s):
                dropped = await _grant(s, account.id, "撤回的授权")
                raise RuntimeError("the inner step failed")
        # The dropped consent is no longer good for a read either.
        with pytest.raises(consent.ConsentRequired):
            await consent.require(s, consent_id=dropped.id, account_id=account.id, purpose="撤回的授权")
    consents, _, events = await _stored(account.id)
    assert [x.purpose for x in consents] == ["保留的授权"]
    assert [e.subject_id for e in events] == [kept.id]


async def test_a_read_through_the_session_sees_the_queued_rows() -> None:
    account = await _saved_account()
    async with session_scope() as s:
        write_batch.defer(s)
        c = await _grant(s, account.id)
        found = (await s.exec(select(Consent).where(Consent.account_id == account.id))).all()
        assert [x.id for x in found] == [c.id]


async def test_without_deferring_the_rows_are_written_where_they_are_made() -> None:
    async with session_scope() as s:
        account = _account()
        s.add(account)
        await s.flush()
        with counted() as statements:
            await consent.grant(s, account_id=account.id, purpose="测试授权", scopes=["person.name"])
        assert any(st.startswith("INSERT INTO app_consent") for st in statements)


async def test_a_queued_job_is_the_row_the_orm_would_have_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """``outbox.enqueue`` builds a deferred job's row itself: it must match the model's defaults."""
    from app_api.core.jobs import outbox
    from app_api.core.jobs.models import OutboxMessage

    async def hold(ids: Any) -> list[str]:  # the rows stay as written: no worker runs them
        return []

    monkeypatch.setattr(outbox, "send", hold)

    async with session_scope() as s:
        plain = await outbox.enqueue(s, "tests.write_batch_probe", marker="plain")
        await s.flush()
        write_batch.defer(s)
        queued = await outbox.enqueue(s, "tests.write_batch_probe", marker="queued")
    async with sessionmaker()() as s:
        a = await s.get(OutboxMessage, plain)
        b = await s.get(OutboxMessage, queued)
        assert a is not None and b is not None
        ignore = {"id", "arguments", "created_at", "due_at"}
        assert {k: v for k, v in a.model_dump().items() if k not in ignore} == {
            k: v for k, v in b.model_dump().items() if k not in ignore
        }
        assert b.arguments == {"marker": "queued"} and b.task_name == "tests.write_batch_probe"
        assert b.created_at == b.due_at


async def test_a_preference_read_by_the_caller_is_not_read_again() -> None:
    """A resident with no message preference: once the caller has said so
    (``notify.preference_read``), ``notify.post`` applies the default quiet hours without reading,
    and writes the same message as when it reads for itself."""
    from app_api.platform import notify
    from app_api.platform.notify.models import Notification

    account = await _saved_account()
    async with session_scope() as s:
        read_itself = await notify.post(s, account_id=account.id, template="gov.submitted", params=_PARAMS)
    async with session_scope() as s:
        notify.preference_read(s, account.id, None)
        with counted() as statements:
            told = await notify.post(s, account_id=account.id, template="gov.submitted", params=_PARAMS)
        assert not any("app_notify_preference" in st for st in statements)
    async with sessionmaker()() as s:
        a, b = await s.get(Notification, read_itself), await s.get(Notification, told)
        assert a is not None and b is not None
        assert (a.status, a.text) == (b.status, b.text)
        if a.next_attempt_at is not None:  # inside quiet hours: both wait for the same end
            assert a.next_attempt_at == b.next_attempt_at
    # The next transaction reads again (the absence was known for one transaction only).
    async with session_scope() as s:
        with counted() as statements:
            await notify.post(s, account_id=account.id, template="gov.submitted", params=_PARAMS)
        assert any("app_notify_preference" in st for st in statements)


_PARAMS = {"item": "高龄津贴申领", "number": "BZ20261204000001", "days": 5}


async def test_an_update_registered_for_the_commit_goes_with_the_queued_rows(is_postgres: bool) -> None:
    """``update_at_commit``: the object's changed columns, as they are at the commit (a change made
    after registering it included), are written with the queued rows (on PostgreSQL, the same
    statement), and nothing is written twice."""
    account = await _saved_account()
    async with session_scope() as s:
        write_batch.defer(s)
        mine = await s.get(Account, account.id)
        assert mine is not None
        write_batch.update_at_commit(s, mine)
        mine.identity_level = 2
        c = await _grant(s, account.id)
        mine.identity_level = 3  # changed again after registering: the commit writes this one
        with counted() as statements:
            await s.commit()
    updates = [st for st in statements if "UPDATE app_account" in st]
    assert len(updates) == 1
    if is_postgres:
        assert updates[0].startswith("WITH") and "app_consent" in updates[0]
    async with sessionmaker()() as s:
        stored = await s.get(Account, account.id)
        assert stored is not None and stored.identity_level == 3
        assert [x.id for x in (await _stored(account.id))[0]] == [c.id]
