"""The broker: taskiq on a Redis stream in production, in-process in the embedded default.

Messages only wake workers up (``app.run_job(outbox_id)``); retries, delays and dead letters live in
the outbox rows (``app_api.core.jobs.runner``), so the broker needs no retry middleware and losing
its messages loses no job.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import logging
import sys
from collections.abc import AsyncGenerator, Sequence
from types import ModuleType
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# taskiq.middlewares (pinned taskiq 0.13): these three are imported with the package, as its own
# __init__ does; the fourth, the admin middleware, on first use (see _LazyTaskiqMiddlewares).
_EAGER_MIDDLEWARES = {
    "PrometheusMiddleware": "prometheus_middleware",
    "SimpleRetryMiddleware": "simple_retry_middleware",
    "SmartRetryMiddleware": "smart_retry_middleware",
}
_LAZY_MIDDLEWARES = {"TaskiqAdminMiddleware": "taskiq_admin_middleware"}


class _LazyTaskiqMiddlewares(importlib.machinery.PathFinder):
    """Loads the package ``taskiq.middlewares`` with its admin middleware deferred to first use.

    ``import taskiq`` (any taskiq module: the package's ``__init__`` runs first) imports
    ``taskiq.middlewares``, whose ``__init__`` imports ``TaskiqAdminMiddleware``, which imports
    aiohttp at its top: about 80 modules and 8 MB in every process for a middleware the project never
    uses (issue 19). Importing taskiq's submodules directly does not avoid it (the package's
    ``__init__`` runs first) and taskiq has no setting for it. This finder serves the same package
    (same ``__path__``, same names in ``__all__``) with ``TaskiqAdminMiddleware`` resolved by a
    module ``__getattr__`` on first access, which imports its module (and aiohttp) as usual; every
    other import of aiohttp is untouched. Installed only for the pinned taskiq whose package
    ``__init__`` it mirrors (tests/app_api/test_process_footprint.py compares the two)."""

    @classmethod
    def find_spec(
        cls, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "taskiq.middlewares":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not spec.submodule_search_locations:
            return None
        spec.loader = _MiddlewaresLoader()
        return spec


class _MiddlewaresLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        package = module.__name__
        for name, submodule in _EAGER_MIDDLEWARES.items():
            setattr(module, name, getattr(importlib.import_module(f"{package}.{submodule}"), name))

        def __getattr__(name: str) -> Any:
            if name in _LAZY_MIDDLEWARES:
                value = getattr(importlib.import_module(f"{package}.{_LAZY_MIDDLEWARES[name]}"), name)
                setattr(module, name, value)
                return value
            raise AttributeError(f"module {package!r} has no attribute {name!r}")

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        module.__all__ = (*_EAGER_MIDDLEWARES, *_LAZY_MIDDLEWARES)  # type: ignore[attr-defined]


def _install_lazy_taskiq_middlewares() -> None:
    from importlib.metadata import version

    if "taskiq" in sys.modules or version("taskiq") != "0.13.0":
        return
    sys.meta_path.insert(0, _LazyTaskiqMiddlewares)
    try:
        import taskiq  # noqa: F401
    finally:
        sys.meta_path.remove(_LazyTaskiqMiddlewares)


_install_lazy_taskiq_middlewares()

from taskiq import AckableMessage, AsyncBroker, InMemoryBroker  # noqa: E402

from app_api.core.settings import get_settings  # noqa: E402


def _stream_broker(url: str) -> AsyncBroker:
    from taskiq_redis import RedisStreamBroker

    class ResilientStreamBroker(RedisStreamBroker):
        """A stream consumer that outlives Redis: after a restart (even an empty one, with the stream
        and its consumer group gone) it declares the group again and goes on reading. Redis emptied
        under it without a restart (FLUSHALL, the key deleted) answers its blocked read with
        ``UNBLOCKED the stream key no longer exists``: the same recovery, not the worker process's
        death (it was restarted by taskiq, with the jobs it was running cut off)."""

        async def listen(self) -> AsyncGenerator[AckableMessage, None]:
            failing = False
            while True:
                try:
                    async for message in super().listen():
                        failing = False
                        yield message
                except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                    if isinstance(exc, ResponseError) and not any(
                        gone in str(exc) for gone in ("NOGROUP", "UNBLOCKED")
                    ):
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
