"""Redis: the real server in production, fakeredis in-process for the embedded default."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app_api.core.settings import get_settings

_client: aioredis.Redis | None = None


def _make(url: str) -> aioredis.Redis:
    if url.startswith("memory://"):
        import fakeredis

        server: Any = fakeredis.FakeServer()
        return fakeredis.FakeAsyncRedis(server=server, decode_responses=False)
    # A connection pooled before Redis restarted fails on its first use: one immediate retry on a
    # fresh connection hides that (seen by the fault suite as a stray 503 after recovery). During an
    # outage both tries fail within a second in all (refused at once, or two half-second connect
    # timeouts), then 503 (see app_api.core.outage).
    return aioredis.Redis.from_url(
        url,
        decode_responses=False,
        health_check_interval=30,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 1),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


async def get_redis() -> aioredis.Redis:
    global _client
    if _client is None:
        _client = _make(get_settings().redis_url)
    return _client


async def close_redis() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
    _client = None
