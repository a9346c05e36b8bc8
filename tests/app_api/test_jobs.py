"""The job runtime: a job is done only when its handler finished; failures back off and end in a
dead letter an admin can see and retry; lost messages, dead workers and duplicated messages are
recovered by the relay without running a job twice; schedules tick once however many schedulers run."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa

from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs import broker, outbox, runner, schedules
from app_api.core.jobs.models import JobSchedule, JobStatus, OutboxMessage
from app_api.core.jobs.settings import get_jobs_settings
from tests.conftest import LoginFn

CALLS: Counter[str] = Counter()
FAIL_FIRST: dict[str, int] = {}
GATE: dict[str, asyncio.Event] = {}


@broker.task(task_name="tests.jobs.flaky")
async def flaky(key: str, outbox_id: str | None = None) -> None:
    """Fails its first ``FAIL_FIRST[key]`` calls, then succeeds."""
    CALLS[key] += 1
    if CALLS[key] <= FAIL_FIRST.get(key, 0):
        raise ConnectionError(f"biller unreachable (call {CALLS[key]})")


@broker.task(task_name="tests.jobs.always_fails", max_retries=2)
async def always_fails(key: str) -> None:
    CALLS[key] += 1
    raise ValueError("the provider refused the request")


@broker.task(task_name="tests.jobs.slow")
async def slow(key: str) -> None:
    CALLS[key] += 1
    await GATE.setdefault(key, asyncio.Event()).wait()


@broker.task(task_name="tests.jobs.permanent")
async def permanent(key: str) -> None:
    CALLS[key] += 1
    raise runner.PermanentJobError("account closed at the biller")


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Backoff of tens of milliseconds, so a test sees several attempts."""
    monkeypatch.setenv("WOJIA_JOBS_RETRY_BASE_S", "0.05")
    monkeypatch.setenv("WOJIA_JOBS_RETRY_CAP_S", "0.2")
    get_jobs_settings.cache_clear()
    yield
    get_jobs_settings.cache_clear()


def _key(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name}-{os.urandom(4).hex()}"


async def _job(job_id: str) -> OutboxMessage:
    async with sessionmaker()() as s:
        row = await s.get(OutboxMessage, job_id)
        assert row is not None
        return row


async def _until(job_id: str, *statuses: str, timeout: float = 10.0) -> OutboxMessage:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        await outbox.flush_marks()
        row = await _job(job_id)
        if row.status in statuses or loop.time() > end:
            return row
        await asyncio.sleep(0.05)


async def _enqueue(task: str, **kwargs: object) -> str:
    async with session_scope() as s:
        return await outbox.enqueue(s, task, **kwargs)


def test_backoff_grows_exponentially_to_its_cap_with_jitter() -> None:
    lows = [runner.backoff_s(n, base=2, cap=900, rand=lambda: 0.0) for n in range(1, 13)]
    highs = [runner.backoff_s(n, base=2, cap=900, rand=lambda: 1.0) for n in range(1, 13)]
    assert highs[:5] == [2, 4, 8, 16, 32]
    assert lows[:3] == [1, 2, 4]  # jitter over the upper half
    assert max(highs) == 900 and highs[-1] == 900  # capped
    assert all(lo <= hi for lo, hi in zip(lows, highs, strict=True))


async def test_a_failing_job_is_retried_with_backoff_and_done_once_it_succeeds(
    request: pytest.FixtureRequest, fast_retries: None
) -> None:
    key = _key(request)
    FAIL_FIRST[key] = 2
    job_id = await _enqueue("tests.jobs.flaky", key=key)
    row = await _until(job_id, "done")
    assert row.status == "done" and row.attempts == 3 and CALLS[key] == 3
    assert row.finished_at is not None and row.last_error is None


async def test_a_job_that_keeps_failing_goes_to_dead_letter_and_an_admin_retries_it(
    request: pytest.FixtureRequest, fast_retries: None, client: httpx.AsyncClient, login: LoginFn
) -> None:
    key = _key(request)
    job_id = await _enqueue("tests.jobs.always_fails", key=key)
    row = await _until(job_id, "dead")
    assert row.status == "dead" and row.attempts == 3 and CALLS[key] == 3  # max_retries=2
    assert "the provider refused the request" in (row.last_error or "")

    resident = await login()
    assert (await client.get("/api/v1/admin/jobs?status=dead", headers=resident)).status_code == 403
    admin = await login(roles=["admin"])
    listed = (
        await client.get("/api/v1/admin/jobs?status=dead&task=tests.jobs.always_fails", headers=admin)
    ).json()
    assert job_id in [j["id"] for j in listed["items"]] and listed["counts"]["dead"] >= 1
    detail = (await client.get(f"/api/v1/admin/jobs/{job_id}", headers=admin)).json()
    assert detail["arguments"] == {"key": key} and detail["attempts"] == 3

    r = await client.post(f"/api/v1/admin/jobs/{job_id}/retry", headers=admin)
    assert r.status_code == 200, r.text
    row = await _until(job_id, "dead")
    assert CALLS[key] == 6, "a retried job gets a fresh set of attempts"
    r = await client.post(f"/api/v1/admin/jobs/{job_id}/retry", headers=admin)
    assert r.status_code == 200
    # Retrying something that is not dead is refused, in Chinese.
    await _until(job_id, "dead")
    done_id = await _enqueue("tests.jobs.flaky", key=key + "-ok")
    await _until(done_id, "done")
    r = await client.post(f"/api/v1/admin/jobs/{done_id}/retry", headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "jobs.not_dead" and "重试" in r.json()["title"]
    r = await client.get("/api/v1/admin/jobs/nope", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "jobs.not_found"


async def test_bad_payload_goes_to_dead_letter_at_once_and_does_not_block_the_jobs_behind_it(
    request: pytest.FixtureRequest,
) -> None:
    key = _key(request)
    bad = await _enqueue("tests.jobs.flaky", wrong_argument="x")
    unknown = await _enqueue("tests.jobs.no_such_task", key=key)
    refused = await _enqueue("tests.jobs.permanent", key=key)
    good = await _enqueue("tests.jobs.flaky", key=key)
    assert (await _until(good, "done")).status == "done"
    for job_id, why in (
        (bad, "arguments do not fit"),
        (unknown, "no task named"),
        (refused, "account closed"),
    ):
        row = await _until(job_id, "dead")
        assert row.status == "dead" and row.attempts == 1 and why in (row.last_error or ""), row


async def test_duplicate_messages_run_a_job_once(request: pytest.FixtureRequest) -> None:
    key = _key(request)
    async with sessionmaker()() as s:
        job = OutboxMessage(task_name="tests.jobs.flaky", arguments={"key": key})
        s.add(job)
        await s.commit()
    outcomes = await asyncio.gather(*(runner.execute(job.id) for _ in range(5)))
    assert sorted(outcomes) == ["done"] + ["skipped"] * 4
    assert CALLS[key] == 1
    assert await runner.execute(job.id) == "skipped"


async def test_a_job_whose_worker_died_is_sent_again_after_its_lease_and_runs_once(
    request: pytest.FixtureRequest,
) -> None:
    """Kill -9 of a worker mid-job leaves the row running with a lease nobody renews."""
    key = _key(request)
    now = utcnow()
    async with sessionmaker()() as s:
        job = OutboxMessage(
            task_name="tests.jobs.flaky",
            arguments={"key": key},
            status=JobStatus.running,
            attempts=1,
            created_at=now - dt.timedelta(minutes=2),
            due_at=now - dt.timedelta(minutes=2),
            started_at=now - dt.timedelta(minutes=1),
            lease_until=now - dt.timedelta(seconds=1),
        )
        s.add(job)
        await s.commit()
    assert await outbox.relay() >= 1
    row = await _until(job.id, "done")
    assert row.status == "done" and row.attempts == 2 and CALLS[key] == 1
    assert await outbox.relay() == 0


async def test_a_running_job_keeps_its_lease_and_is_not_taken_over(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WOJIA_JOBS_LEASE_S", "2")
    get_jobs_settings.cache_clear()
    key = _key(request)
    try:
        job_id = await _enqueue("tests.jobs.slow", key=key)
        await _until(job_id, "running")
        await asyncio.sleep(2.5)  # longer than the lease: renewed while it runs
        assert await outbox.relay() == 0
        row = await _job(job_id)
        assert row.status == "running" and row.lease_until is not None and row.lease_until > utcnow()
        GATE.setdefault(key, asyncio.Event()).set()
        assert (await _until(job_id, "done")).attempts == 1
        assert CALLS[key] == 1
    finally:
        GATE.setdefault(key, asyncio.Event()).set()
        get_jobs_settings.cache_clear()


async def test_a_message_lost_by_the_broker_is_sent_again(request: pytest.FixtureRequest) -> None:
    """Redis wiped after the send: the row says dispatched, nothing ran; the relay sends it again."""
    key = _key(request)
    long_ago = utcnow() - dt.timedelta(minutes=5)
    async with sessionmaker()() as s:
        job = OutboxMessage(
            task_name="tests.jobs.flaky",
            arguments={"key": key},
            created_at=long_ago,
            due_at=long_ago,
            dispatched_at=long_ago,
        )
        fresh = OutboxMessage(  # sent a moment ago: still in the broker's hands
            task_name="tests.jobs.flaky", arguments={"key": key + "-fresh"}, dispatched_at=utcnow()
        )
        s.add_all([job, fresh])
        await s.commit()
    await outbox.relay()
    assert (await _until(job.id, "done")).status == "done"
    assert (await _job(fresh.id)).status == "pending" and CALLS[key + "-fresh"] == 0


async def test_a_late_answer_of_an_old_attempt_does_not_overwrite_the_new_one(
    request: pytest.FixtureRequest,
) -> None:
    key = _key(request)
    async with sessionmaker()() as s:
        job = OutboxMessage(task_name="tests.jobs.flaky", arguments={"key": key})
        s.add(job)
        await s.commit()
    claimed = await runner._claim(job.id)
    assert claimed is not None and claimed[0] == 1
    # Its lease ran out and another worker took the job over (attempt 2) ...
    async with sessionmaker()() as s:
        await s.exec(sa.update(OutboxMessage).where(OutboxMessage.id == job.id).values(attempts=2))  # type: ignore[call-overload]
        await s.commit()
    # ... then the first worker's failure arrives: it must not put the job back to retry.
    await runner._fail(job.id, 1, "tests.jobs.flaky", "late", permanent=False, schedule=None)
    assert (await _job(job.id)).status == "running"


NAME = "tests.jobs.every_minute"


@broker.task(task_name=NAME, schedule=[{"cron": "* * * * *"}])
async def every_minute() -> None:
    CALLS["every_minute"] += 1


async def test_each_tick_runs_once_however_many_schedulers_run() -> None:
    await schedules.sync()
    async with sessionmaker()() as s:
        row = await s.get(JobSchedule, "tests.jobs.every_minute")
        assert row is not None and row.cron == "* * * * *"
        first = row.next_run_at
    assert first > utcnow() - dt.timedelta(seconds=1)  # a new schedule waits for its first time
    before = CALLS["every_minute"]
    # Four schedulers see the tick at once (the api, two workers and wojia scheduler).
    at = first + dt.timedelta(seconds=1)
    written = await asyncio.gather(*(schedules.tick(at, only=[NAME]) for _ in range(4)))
    ours = [
        j for batch in written for j in batch if j == schedules.tick_job_id("tests.jobs.every_minute", first)
    ]
    assert len(ours) == 1
    row2 = await _until(ours[0], "done")
    assert row2.schedule == "tests.jobs.every_minute" and CALLS["every_minute"] == before + 1
    async with sessionmaker()() as s:
        sch = await s.get(JobSchedule, "tests.jobs.every_minute")
        assert sch is not None and sch.next_run_at == first + dt.timedelta(minutes=1)
        assert sch.last_status == "done" and sch.last_job_id == ours[0]
    # An hour with no scheduler: the schedule runs once, not sixty times, then keeps its rhythm.
    later = first + dt.timedelta(hours=1, seconds=5)
    assert len(await schedules.tick(later, only=[NAME])) == 1
    async with sessionmaker()() as s:
        sch = await s.get(JobSchedule, "tests.jobs.every_minute")
        assert sch is not None and sch.next_run_at == first + dt.timedelta(hours=1, minutes=1)
        n = (
            await s.exec(  # type: ignore[call-overload]
                sa.select(sa.func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.schedule == "tests.jobs.every_minute")
            )
        ).one()[0]
    assert n == 2


def test_wojia_jobs_status_lists_each_schedule() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "app_api.wiring.cli", "jobs", "status"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for name in ("payments.reconcile_daily", "app.notify_sweep", "gov_services.supervise"):
        assert name in out.stdout
    assert "jobs: pending" in out.stdout
