"""Redis: the real server in production, fakeredis in-process for the embedded default."""

from __future__ import annotations

import sys
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app_api.core.settings import get_settings

_client: aioredis.Redis | None = None


class _NoNumpyForFakeredis:
    """A finder that answers "not installed" to fakeredis's own import of numpy (it checks its own
    frames, so an import of numpy from another thread at the same moment is not affected)."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "numpy":
            frame = sys._getframe(1)
            while frame is not None:
                if str(frame.f_globals.get("__name__", "")).partition(".")[0] == "fakeredis":
                    raise ModuleNotFoundError("numpy is not loaded for fakeredis", name="numpy")
                frame = frame.f_back  # type: ignore[assignment]
        return None


def _load_fakeredis() -> None:
    """Load fakeredis without the numpy it loads (when installed) for vector sets, a command family the
    project does not use: ~20 MB less per api worker on the embedded default (issue 19). When numpy
    is loaded already, fakeredis gets it as usual."""
    if "fakeredis" in sys.modules or "numpy" in sys.modules:
        return
    finder = _NoNumpyForFakeredis()
    sys.meta_path.insert(0, finder)
    try:
        import fakeredis  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


def _make(url: str) -> aioredis.Redis:
    if url.startswith("memory://"):
        _load_fakeredis()
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
