"""Telling an outage of PostgreSQL or Redis from a bug, so a client gets 503 and not 500.

During an outage every request that needs the dependency fails the same way: a refused or reset
connection, a pool that cannot connect in time. That is not the request's fault and not a defect to
page anyone about: the answer is 503 ``app.unavailable`` with ``Retry-After``, and the process
recovers by itself when the dependency is back (the pool reconnects, ``pool_pre_ping`` drops dead
connections, redis-py reconnects on the next command).
"""

from __future__ import annotations

import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors

# Connection-level failures only: a constraint violation or a syntax error stays a 500 (a bug).
_REDIS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_DATABASE = (sa_errors.OperationalError, sa_errors.InterfaceError, sa_errors.TimeoutError)
_NETWORK = (ConnectionError, TimeoutError)  # builtins: asyncpg's refused connect, socket timeouts


# What the app registers exception handlers for; :func:`unavailable_dependency` then decides.
OUTAGE_EXCEPTIONS: tuple[type[Exception], ...] = (
    *_REDIS,
    sa_errors.DBAPIError,
    sa_errors.TimeoutError,
    *_NETWORK,
)


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"redis"``, ``"database"`` or ``"network"`` when ``exc`` (or what caused it) is an outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _REDIS):
            return "redis"
        if isinstance(current, _DATABASE) or (
            isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated
        ):
            return "database"
        if isinstance(current, _NETWORK):
            return "network"
        current = current.__cause__ or current.__context__
    return None
