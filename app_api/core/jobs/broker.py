"""The broker: taskiq on a Redis stream in production, in-process in the embedded default.

Messages only wake workers up (``app.run_job(outbox_id)``); retries, delays and dead letters live in
the outbox rows (``app_api.core.jobs.runner``), so the broker needs no retry middleware and losing
its messages loses no job.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from taskiq import AckableMessage, AsyncBroker, InMemoryBroker

from app_api.core.settings import get_settings

log = logging.getLogger(__name__)


def _stream_broker(url: str) -> AsyncBroker:
    from taskiq_redis import RedisStreamBroker

    class ResilientStreamBroker(RedisStreamBroker):
        """A stream consumer that outlives Redis: after a restart (even an empty one, with the stream
        and its consumer group gone) it declares the group again and goes on reading."""

        async def listen(self) -> AsyncGenerator[AckableMessage, None]:
            failing = False
            while True:
                try:
                    async for message in super().listen():
                        failing = False
                        yield message
                except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                    if isinstance(exc, ResponseError) and "NOGROUP" not in str(exc):
                        raise
                    if not failing:
                        log.warning("job stream: %s; reconnecting", exc)
                    failing = True
                    await asyncio.sleep(1)
                    try:
                        await self._declare_consumer_group()
                    except Exception as again:
                        log.debug("job stream: declaring the consumer group failed: %s", again)

    return ResilientStreamBroker(
        url=url,
        queue_name="wojia:jobs",
        consumer_group_name="wojia",
        # A new group reads the stream from its start: messages written before any worker was up
        # are not skipped.
        consumer_id="0",
        # Messages a dead consumer read but never acknowledged are claimed by another after 30 s
        # (the outbox relay resends the job anyway once its lease runs out).
        idle_timeout=30_000,
        unacknowledged_lock_timeout=5,
        # Keep the stream bounded: acknowledged messages are of no further use.
        maxlen=100_000,
        socket_connect_timeout=1,
        socket_timeout=10,
    )


def _make_broker() -> AsyncBroker:
    s = get_settings()
    if s.embedded_jobs:
        return InMemoryBroker(max_async_tasks=50)
    return _stream_broker(s.redis_url)


broker: AsyncBroker = _make_broker()
