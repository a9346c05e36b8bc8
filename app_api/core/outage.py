"""Telling an outage of PostgreSQL or Redis from a bug, so a client gets 503 and not 500.

During an outage every request that needs the dependency fails the same way: a refused or reset
connection, a pool that cannot connect in time. That is not the request's fault and not a defect to
page anyone about: the answer is 503 ``app.unavailable`` with ``Retry-After``, and the process
recovers by itself when the dependency is back (the pool reconnects, the checkout ping drops dead
connections, redis-py reconnects on the next command).
"""

from __future__ import annotations

import re

import redis.exceptions as redis_errors
import sqlalchemy.exc as sa_errors

# Connection-level failures only: a constraint violation or a syntax error stays a 500 (a bug).
_REDIS = (redis_errors.ConnectionError, redis_errors.TimeoutError)
_DATABASE = (sa_errors.OperationalError, sa_errors.InterfaceError, sa_errors.TimeoutError)
_NETWORK = (ConnectionError, TimeoutError)  # builtins: asyncpg's refused connect, socket timeouts


# PostgreSQL's own word that it cannot serve now, whatever the driver wraps it in: a connection
# exception (class 08), too many connections (53300), and operator intervention (57P01 admin
# shutdown, 57P02 crash shutdown: "terminating connection because of crash of another server
# process", 57P03 "the database system is starting up" / "is in recovery mode"). The fault suite
# met 57P03 as a 500 while PostgreSQL replayed its WAL after a kill -9.
_PG_OUTAGE_SQLSTATES = frozenset({"53300", "57P01", "57P02", "57P03"})


def _pg_outage(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return isinstance(state, str) and (state.startswith("08") or state in _PG_OUTAGE_SQLSTATES)


# A connection torn down under a driver while it writes: uvloop (and asyncio) raise a bare
# RuntimeError for a write on a transport already closed. The fault suite met it as a 500 when Redis
# was killed while a connection of redis-py was sending its HELLO. Only when raised inside a
# driver's code: the same words elsewhere are a bug.
_CLOSED_TRANSPORT = re.compile(
    r"^unable to perform operation on <\w*Transport\b.*closed=True.*>; the handler is closed$"
)
_DRIVERS = ("redis.", "asyncpg.", "sqlalchemy.")


def _closed_under_driver(exc: BaseException) -> bool:
    if not isinstance(exc, RuntimeError) or not _CLOSED_TRANSPORT.match(str(exc)):
        return False
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(_DRIVERS):
            return True
        tb = tb.tb_next
    return False


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        from asyncpg.exceptions import PostgresError
    except ImportError:  # pragma: no cover - asyncpg is installed with the app
        return ()
    return (PostgresError,)


# What the app registers exception handlers for; :func:`unavailable_dependency` then decides.
OUTAGE_EXCEPTIONS: tuple[type[Exception], ...] = (
    *_REDIS,
    sa_errors.DBAPIError,
    sa_errors.TimeoutError,
    *_NETWORK,
    # asyncpg's refusals while connecting reach the app unwrapped (SQLAlchemy translates the
    # driver's errors on statements, not on connect): 57P03 while PostgreSQL recovers.
    *_driver_errors(),
)


def unavailable_dependency(exc: BaseException) -> str | None:
    """``"redis"``, ``"database"`` or ``"network"`` when ``exc`` (or what caused it) is an outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _REDIS):
            return "redis"
        if (
            isinstance(current, _DATABASE)
            or (isinstance(current, sa_errors.DBAPIError) and current.connection_invalidated)
            or _pg_outage(current)
        ):
            return "database"
        if isinstance(current, _NETWORK) or _closed_under_driver(current):
            return "network"
        current = current.__cause__ or current.__context__
    return None
