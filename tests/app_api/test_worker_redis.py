"""The production job path: taskiq on Redis streams, consumed by the `wojia worker` process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

REDIS_URL = os.environ.get("WOJIA_REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not REDIS_URL or REDIS_URL.startswith("memory://"), reason="needs a real Redis (WOJIA_REDIS_URL)"
)


@contextlib.contextmanager
def wojia_worker(**env: str) -> Iterator[subprocess.Popen[bytes]]:
    """``wojia worker`` in a subprocess, its jobs through Redis, with the test's environment and
    ``env``; stopped on leaving."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "app_api.wiring.cli", "worker"],
        env={**os.environ, "WOJIA_JOBS_EMBEDDED": "false", **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()


def assert_alive(worker: subprocess.Popen[bytes]) -> None:
    assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""


async def finished(worker: subprocess.Popen[bytes], job_id: str, *, within_s: float) -> Any:
    """The job's outbox row once ``done``, or as it stands after ``within_s`` (the worker alive)."""
    from app_api.core.db import sessionmaker
    from app_api.core.jobs.models import OutboxMessage

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        async with sessionmaker()() as s:
            row = await s.get(OutboxMessage, job_id)
        if (row is not None and row.status == "done") or loop.time() > deadline:
            return row
        assert_alive(worker)
        await asyncio.sleep(0.1)


async def test_worker_process_runs_jobs_sent_through_redis() -> None:
    import redis.asyncio as aioredis
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import RedisStreamBroker

    sender = RedisStreamBroker(url=REDIS_URL, queue_name="wojia:jobs", consumer_group_name="wojia")
    await sender.startup()
    r = aioredis.Redis.from_url(REDIS_URL)
    token = secrets.token_hex(8)
    try:
        with wojia_worker() as worker:
            await AsyncKicker(task_name="app.ping", broker=sender, labels={}).kiq(token=token)
            for _ in range(300):
                if await r.get(f"jobs:pong:{token}"):
                    break
                assert_alive(worker)
                await asyncio.sleep(0.1)
            assert await r.get(f"jobs:pong:{token}") == b"1"
    finally:
        await sender.shutdown()
        await r.aclose()


async def test_worker_runs_outbox_jobs_and_survives_redis_wiped() -> None:
    """The production path of a job: an outbox row, a wake-up on the stream, the worker claims and
    finishes it (``done`` in the database). Then Redis is emptied under the running worker (the
    stream and its consumer group gone, as after a restart without persistence): the worker declares
    its group again and the next job still runs."""
    import redis.asyncio as aioredis
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import RedisStreamBroker

    from app_api.core.db import sessionmaker
    from app_api.core.jobs.models import OutboxMessage

    r = aioredis.Redis.from_url(REDIS_URL)

    async def run_one(worker: subprocess.Popen[bytes]) -> str:
        token = secrets.token_hex(8)
        async with sessionmaker()() as s:
            job = OutboxMessage(task_name="app.ping", arguments={"token": token})
            s.add(job)
            await s.commit()
        sender = RedisStreamBroker(url=REDIS_URL, queue_name="wojia:jobs", consumer_group_name="wojia")
        await sender.startup()
        try:
            await AsyncKicker(task_name="app.run_job", broker=sender, labels={}).kiq(job.id)
        finally:
            await sender.shutdown()
        row = await finished(worker, job.id, within_s=30)
        assert row is not None and row.status == "done" and row.attempts == 1, row
        assert await r.get(f"jobs:pong:{token}") == b"1"
        return job.id

    try:
        with wojia_worker() as worker:
            await run_one(worker)
            await r.flushdb()  # Redis restarted empty: no stream, no consumer group
            await asyncio.sleep(1.5)
            await run_one(worker)
    finally:
        await r.aclose()


async def test_jobs_lost_with_redis_are_sent_again_at_the_next_relay_round() -> None:
    """A job was sent to Redis and Redis lost it (restarted empty) before any worker took it. The
    relay notices the broker's epoch key gone at its next round and sends the job again then, not
    ``resend_after_s`` (here 120 s) after it was first sent."""
    import datetime as dt

    import redis.asyncio as aioredis

    from app_api.core.db import sessionmaker, utcnow
    from app_api.core.jobs.models import OutboxMessage
    from app_api.core.jobs.outbox import EPOCH_KEY

    r = aioredis.Redis.from_url(REDIS_URL)
    await r.delete(EPOCH_KEY)
    try:
        with wojia_worker(
            WOJIA_JOBS_RUN_LOOP="true",  # the worker's relay is what is tested
            WOJIA_JOBS_RELAY_EVERY_S="1",
            WOJIA_JOBS_RESEND_AFTER_S="120",
        ) as worker:
            for _ in range(300):  # the worker's relay has made its first round
                if await r.get(EPOCH_KEY):
                    break
                assert_alive(worker)
                await asyncio.sleep(0.1)
            assert await r.get(EPOCH_KEY)
            token = secrets.token_hex(8)
            async with sessionmaker()() as s:
                # Sent a moment ago, into the Redis about to be lost (its message never arrives).
                job = OutboxMessage(
                    task_name="app.ping",
                    arguments={"token": token},
                    dispatched_at=utcnow() - dt.timedelta(seconds=1),
                )
                s.add(job)
                await s.commit()
            await r.flushdb()  # Redis restarted empty
            row = await finished(worker, job.id, within_s=20)
            assert row is not None and row.status == "done" and row.attempts == 1, row
            assert await r.get(f"jobs:pong:{token}") == b"1"
    finally:
        await r.aclose()
    # Its blocked read answered "UNBLOCKED the stream key no longer exists" did not kill the worker
    # process (taskiq would have started another, cutting off the jobs it was running).
    log = worker.stderr.read().decode() if worker.stderr else ""
    assert "is dead" not in log, log[-3000:]
