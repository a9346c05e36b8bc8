"""The production job path: taskiq on Redis streams, consumed by the `wojia worker` process."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys

import pytest

REDIS_URL = os.environ.get("WOJIA_REDIS_URL", "")
pytestmark = pytest.mark.skipif(
    not REDIS_URL or REDIS_URL.startswith("memory://"), reason="needs a real Redis (WOJIA_REDIS_URL)"
)


async def test_worker_process_runs_jobs_sent_through_redis() -> None:
    import redis.asyncio as aioredis
    from taskiq.kicker import AsyncKicker
    from taskiq_redis import RedisStreamBroker

    env = {**os.environ, "WOJIA_JOBS_EMBEDDED": "false"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "app_api.wiring.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    sender = RedisStreamBroker(url=REDIS_URL, queue_name="wojia:jobs", consumer_group_name="wojia")
    await sender.startup()
    r = aioredis.Redis.from_url(REDIS_URL)
    token = secrets.token_hex(8)
    try:
        await AsyncKicker(task_name="app.ping", broker=sender, labels={}).kiq(token=token)
        for _ in range(300):
            if await r.get(f"jobs:pong:{token}"):
                break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""
            await asyncio.sleep(0.1)
        assert await r.get(f"jobs:pong:{token}") == b"1"
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
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

    env = {**os.environ, "WOJIA_JOBS_EMBEDDED": "false"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "app_api.wiring.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    r = aioredis.Redis.from_url(REDIS_URL)

    async def run_one() -> str:
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
        for _ in range(300):
            async with sessionmaker()() as s:
                row = await s.get(OutboxMessage, job.id)
                if row is not None and row.status == "done":
                    break
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:] if worker.stderr else ""
            await asyncio.sleep(0.1)
        assert row is not None and row.status == "done" and row.attempts == 1, row
        assert await r.get(f"jobs:pong:{token}") == b"1"
        return job.id

    try:
        await run_one()
        await r.flushdb()  # Redis restarted empty: no stream, no consumer group
        await asyncio.sleep(1.5)
        await run_one()
    finally:
        worker.terminate()
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        await r.aclose()
