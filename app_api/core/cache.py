"""Per-process caches for the hot path, invalidated across workers through Redis pub/sub.

Reading the caller's principal and the column configuration from Redis on every request costs two
round trips; these caches answer from memory instead. Any change publishes the keys it touched on
``wojia:invalidate`` and every worker drops them at once; a short TTL bounds staleness should a
worker miss a message (for example while its Redis connection reconnects).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app_api.core.redis import get_redis

log = logging.getLogger(__name__)
CHANNEL = "wojia:invalidate"


class LocalCache:
    def __init__(self, name: str, ttl_s: float, max_items: int = 100_000) -> None:
        self.name = name
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._data: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any | None:
        hit = self._data.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._data.pop(key, None)
            return None
        return hit[1]

    def set(self, key: str, value: Any) -> None:
        if len(self._data) >= self.max_items:
            self._data.clear()
        self._data[key] = (time.monotonic() + self.ttl_s, value)

    def drop(self, token: str) -> None:
        """Drop every key equal to ``token`` or containing it as a ``|``-separated part."""
        if token == "*":
            self._data.clear()
            return
        for k in [k for k in self._data if k == token or token in k.split("|")]:
            self._data.pop(k, None)


_caches: dict[str, LocalCache] = {}


def local_cache(name: str, ttl_s: float) -> LocalCache:
    if name not in _caches:
        _caches[name] = LocalCache(name, ttl_s)
    return _caches[name]


def _drop_local(message: str) -> None:
    name, _, token = message.partition(":")
    targets = _caches.values() if name == "*" else [c for n, c in _caches.items() if n == name]
    for c in targets:
        c.drop(token)


async def invalidate(name: str, token: str) -> None:
    """Drop ``token`` from cache ``name`` here and in every other worker."""
    _drop_local(f"{name}:{token}")
    r = await get_redis()
    await r.publish(CHANNEL, f"{name}:{token}")


async def listen_forever() -> None:
    while True:
        try:
            r = await get_redis()
            pubsub = r.pubsub()
            await pubsub.subscribe(CHANNEL)
            # Anything may have changed while not subscribed.
            _drop_local("*:*")
            async for msg in pubsub.listen():
                if msg.get("type") == "message":
                    data = msg["data"]
                    _drop_local(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("cache invalidation listener reconnecting: %s", e)
            await asyncio.sleep(1)
