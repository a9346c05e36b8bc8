"""Database: one async engine per process, one session per request.

The request's session is committed once by the route dependency after the endpoint returns
(services only ``flush()``), and rolled back on any error, so a failed request leaves nothing
half-written. Runs on SQLite (aiosqlite, the embedded default) and PostgreSQL (asyncpg).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from functools import cache
from typing import Annotated, Any, TypeVar, cast

import orjson
import sqlalchemy as sa
from fastapi import Depends
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm.base import manager_of_class
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.settings import VAR_DIR, get_settings

# Stable constraint names so Alembic migrations behave the same on SQLite and PostgreSQL.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _memoize_default_factory_check() -> None:
    """Ask each default factory's signature once, not on every object built.

    SQLModel builds a table object through ``FieldInfo.get_default(call_default_factory=True)``, and
    pydantic 2.14 answers whether the factory takes the validated data by running
    ``inspect.signature`` on it every time (``FieldInfo.default_factory_takes_validated_data`` is not
    cached; pydantic#13376 cached it for private attributes only). For a builtin factory (``dict``,
    ``list``) that parses its text signature through ``tokenize``. The answer is a pure function of
    the factory, so it is memoized here: a notification object took 606 us to build, 269 us with this
    (measured on the shared 2-core machine). A factory that cannot be hashed is asked every time, as
    before. If pydantic moves the function, nothing is patched (tests/app_api/test_db_construct.py
    then fails and says so).
    """
    import functools

    from pydantic._internal import _fields

    original = getattr(_fields, "takes_validated_data_argument", None)
    if original is None or getattr(original, "_wojia_memoized", False):
        return
    cached = functools.cache(original)

    def takes_validated_data_argument(default_factory: Any) -> Any:
        try:
            return cached(default_factory)
        except TypeError:  # unhashable factory
            return original(default_factory)

    takes_validated_data_argument._wojia_memoized = True  # type: ignore[attr-defined]
    _fields.takes_validated_data_argument = takes_validated_data_argument  # type: ignore[assignment]


_memoize_default_factory_check()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


M = TypeVar("M", bound=SQLModel)


@cache
def _field_defaults(cls: type[SQLModel]) -> tuple[tuple[str, Callable[[], Any] | None, Any], ...]:
    """Each field of a model with its default factory or default, read once (pydantic's
    ``get_default`` resolves them again on every call)."""
    return tuple(
        (name, cast("Callable[[], Any] | None", f.default_factory), f.default)
        for name, f in cls.model_fields.items()
    )


def model_row(cls: type[SQLModel], values: dict[str, Any]) -> dict[str, Any]:
    """Every field of ``cls(**values)`` as its constructor fills them: ``values``, the others at
    their default (a factory called, a mutable default copied). The row an INSERT of it writes."""
    row = {}
    for name, factory, default in _field_defaults(cls):
        if name in values:
            row[name] = values[name]
        elif factory is not None:
            row[name] = factory()
        else:
            row[name] = copy.deepcopy(default) if isinstance(default, dict | list | set) else default
    return row


def built(cls: type[M], row: dict[str, Any], given: Iterable[str]) -> M:
    """A new (transient) object of table model ``cls`` holding ``row`` (every field: ``model_row``),
    built as the ORM builds an object it loads, its attributes set at once: SQLModel's constructor
    sets each of them through the ORM's instrumentation (an event and a history entry per field),
    which costs more than the rest of a small object's life on a hot path. ``given``: the fields
    the caller set (pydantic's ``model_fields_set``). Added to a session, it is inserted as any new
    object; ``make_transient_to_detached`` makes it one the database already holds."""
    assert not cls.__pydantic_post_init__, f"{cls.__name__} has a post-init: build it with its constructor"
    obj = manager_of_class(cls).new_instance()
    obj.__dict__.update(row)
    object.__setattr__(obj, "__pydantic_fields_set__", set(given))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware datetimes on every backend (SQLite drops the offset on its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime stored; use timezone-aware datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


def created_at_field() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


def datetime_field(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def json_dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """JSON columns' serializer: orjson (several times the standard library's speed on the rows a
    submission writes), or the standard library for what orjson refuses (an integer beyond 64
    bits). Non-string keys become strings, as with the standard library; a float that is not a
    number (NaN, infinity: not JSON, and PostgreSQL refuses it) becomes null either way."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(_finite(value), ensure_ascii=False, default=default)


def json_stored(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` as a JSON column gives it back after ``json_dumps`` wrote it."""
    try:
        return orjson.loads(orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:  # an integer orjson cannot write (nor read back exactly)
        return json.loads(json.dumps(_finite(value), ensure_ascii=False, default=default))


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (in its dicts, lists and tuples) made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def make_engine(url: str) -> AsyncEngine:
    # Reads keep the standard library's parser: orjson reads an integer beyond 64 bits as a float.
    json_kw: dict[str, Any] = {"json_serializer": json_dumps}
    if url.startswith("sqlite"):
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **json_kw)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # A refused connection fails at once and an unreachable server within 2 s (then 503, see
    # app_api.core.outage), instead of holding the request for asyncpg's default 60 s. Not lower:
    # a loaded database host can take over a second to accept and authenticate.
    engine = create_async_engine(url, pool_size=10, max_overflow=20, connect_args={"timeout": 2.0}, **json_kw)
    event.listen(engine.sync_engine, "connect", _fresh)
    event.listen(engine.sync_engine, "checkout", _ping)
    return engine


_FRESH = "wojia_fresh"


def _fresh(dbapi_connection: Any, record: Any) -> None:
    record.info[_FRESH] = True


def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """``pool_pre_ping`` in one round trip: a pooled connection is tried before each use, and if it
    does not answer (the server restarted, the connection was killed) the pool's connections are
    all replaced and the request gets a new one, as SQLAlchemy's pre-ping does. SQLAlchemy's own
    ping for asyncpg is three round trips (BEGIN, a prepared ``;``, ROLLBACK: for PgBouncer in
    transaction mode, where a prepared statement outside a transaction fails); ``SELECT 1`` on the
    simple protocol (asyncpg's ``execute`` without arguments) prepares nothing and is its own
    transaction, so it is safe there too. (Not the empty query ``;``: asyncpg's simple protocol
    fails on its answer, which has no command tag.) A connection just opened is not tried (as
    pre-ping)."""
    if record.info.pop(_FRESH, False):
        return
    try:
        dbapi_connection.run_async(lambda conn: conn.execute("SELECT 1"))
    except Exception as error:
        raise sa.exc.InvalidatePoolError(f"database connection lost: {error!r}") from error


def get_engine() -> AsyncEngine:
    global _engine, _sessionmaker
    if _engine is None:
        _engine = make_engine(get_settings().database_url)
        _sessionmaker = async_sessionmaker(_engine, class_=AsyncSession, expire_on_commit=False)
    return _engine


def sessionmaker() -> async_sessionmaker[AsyncSession]:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


async def dispose_engine() -> None:
    global _engine, _sessionmaker
    if _engine is not None:
        await _engine.dispose()
    _engine = None
    _sessionmaker = None


_AFTER_COMMIT = "after_commit_callbacks"


def on_commit(session: AsyncSession, callback: Callable[[], Awaitable[Any]]) -> None:
    """Run ``callback`` once the session's transaction has committed (cache invalidation, etc.)."""
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


log = logging.getLogger(__name__)
_AFTER_ROLLBACK = "after_rollback_callbacks"


def on_rollback(session: AsyncSession, callback: Callable[[BaseException], Awaitable[Any]]) -> None:
    """Run ``callback(error)`` if the session's unit of work fails and is rolled back (best effort:
    its own failure is logged). Dropped with the commit, or when a ``savepoint`` around it rolls back."""
    session.sync_session.info.setdefault(_AFTER_ROLLBACK, []).append(callback)


async def _run_after_rollback(session: AsyncSession, error: BaseException) -> None:
    session.sync_session.info.pop(_AFTER_COMMIT, None)
    for cb in session.sync_session.info.pop(_AFTER_ROLLBACK, []):
        try:
            await cb(error)
        except Exception:
            log.exception("a rollback callback failed")


async def run_after_commit(session: AsyncSession) -> None:
    session.sync_session.info.pop(_AFTER_ROLLBACK, None)
    from app_api.core.jobs.outbox import dispatch_pending_after_commit

    for cb in session.sync_session.info.pop(_AFTER_COMMIT, []):
        await cb()
    await dispatch_pending_after_commit(session)


async def get_session() -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed after the endpoint, rolled back on error.

    After the commit, jobs written to the outbox in this transaction are dispatched.
    """
    async with sessionmaker()() as session:
        try:
            yield session
            await session.commit()
        except BaseException as error:
            try:
                await session.rollback()
            finally:
                await _run_after_rollback(session, error)
            raise
    await run_after_commit(session)


@asynccontextmanager
async def session_scope() -> AsyncIterator[AsyncSession]:
    """A unit of work outside a request (jobs, CLI): commit on success, then dispatch the outbox."""
    async with sessionmaker()() as session:
        try:
            yield session
            await session.commit()
        except BaseException as error:
            try:
                await session.rollback()
            finally:
                await _run_after_rollback(session, error)
            raise
    await run_after_commit(session)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A SAVEPOINT whose rollback also drops what was queued inside it for the commit.

    Audit entries, outbox jobs and after-commit callbacks are kept in lists on the session until
    it commits; a bare ``begin_nested()`` that rolls back would still write and send them.
    """
    # Under SQLite a SAVEPOINT opened outside a transaction starts a deferred one: its first read
    # pins a snapshot, and its first write then fails at once with "database is locked" if another
    # connection committed in between (the busy timeout does not apply to that upgrade). Everything
    # done in a savepoint here is a write, so take the write lock first.
    await lock_for_writing(session)
    info = session.sync_session.info
    marks = {key: len(value) for key, value in info.items() if isinstance(value, list)}
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        for key, value in list(info.items()):
            if isinstance(value, list):
                del value[marks.get(key, 0) :]
        raise


async def lock_for_writing(session: AsyncSession, key: str | None = None) -> None:
    """Take the write lock a "check then write" needs, before the check reads anything.

    SQLite ignores ``SELECT ... FOR UPDATE`` and the driver (pysqlite's default transaction control)
    runs reads outside any transaction until the first write, so a check followed by a write can act
    on a row another connection has just changed. Here the transaction starts with
    ``BEGIN IMMEDIATE``: it holds the database's write lock (waiting ``busy_timeout`` for it) before its
    first read, and every read after sees the latest commit. A transaction that has already written
    holds that lock already and is left as it is.

    PostgreSQL: with ``key``, a transaction-scoped advisory lock on it (for checks that have no row
    to lock); without, nothing: the caller locks its rows with ``FOR UPDATE``.
    """
    conn = await session.connection()
    dialect = conn.dialect.name
    if dialect == "sqlite":
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        if not driver.in_transaction:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql" and key is not None:
        await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


# scope="function": commit before the response is sent, so a client never sees success for a
# transaction that failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

__all__ = [
    "AsyncSession",
    "SessionDep",
    "UTCDateTime",
    "created_at_field",
    "datetime_field",
    "get_engine",
    "get_session",
    "lock_for_writing",
    "new_id",
    "on_commit",
    "savepoint",
    "session_scope",
    "sessionmaker",
    "utcnow",
]
