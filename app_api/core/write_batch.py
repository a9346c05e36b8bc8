"""Write-behind inserts for one unit of work.

A request that writes many append-only rows (timeline entries, consents, access-log rows, messages,
outbox jobs, audit events) pays one round trip per table when each is written where it is made. A
unit of work that opts in with ``defer(session)`` queues them instead (``queue`` / ``add``), and the
commit writes them all at once, after the session's own (ORM) flush so that the rows they refer to
exist:

- PostgreSQL: one statement. Each table's multi-row INSERT is a data-modifying CTE of the last one
  (or of a closing statement a contributor gives, such as the audit chain's head update). Foreign
  keys are checked at the end of the statement, so the order of the CTEs does not matter to them.
- SQLite: one multi-row INSERT per table, parents first (it has no data-modifying CTEs).

Contributors (``contribute``) add rows and a closing statement at the commit: on PostgreSQL the
audit chain's closing statement locks its head row, links the entries and moves the head, and
everything else joins it as CTEs (on SQLite it reserves the entries' places first and hands them
over as rows).

Nothing changes for a session that has not opted in: the writers write where they are called.

What a deferred row is not: visible to a read of its own transaction before the commit, except
through the session. A SELECT run with ``session.execute`` on a table with queued rows writes the
queue first; a read on ``session.connection()`` directly does not (no caller here reads back what it
queued). ``app_api.core.db.savepoint`` drops rows queued inside a savepoint that rolls back (the
queue is a list on ``session.info``), and a rollback drops the whole queue: nothing half-written.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import util as sql_util
from sqlalchemy.sql.expression import Executable
from sqlmodel.ext.asyncio.session import AsyncSession

_QUEUE = "write_batch"
_DEFER = "write_batch_defer"
_FLUSHING = "write_batch_flushing"
_HELD = "write_batch_held"
_UPDATED = "write_batch_updated"
# The primary key's parameter of a queued UPDATE (no column is named so).
_PK = "_wb_pk"
# asyncpg's limit is 32,767 bind parameters per statement; stay well under it.
_MAX_PARAMS = 20_000
# Beyond this many rows one statement per table is cheaper than a statement compiled for the shape.
_MAX_CTES = 64

Row = dict[str, Any]
T = TypeVar("T")
# A contributor, called at the commit after the session's flush: rows to insert with the queue and
# an optional closing statement with its parameters (or None when it has nothing to add).
Contribution = tuple[list[tuple[sa.Table, Row]], Executable | None, dict[str, Any]]
Contributor = Callable[[Session], Contribution | None]
_CONTRIBUTORS: list[Contributor] = []


def contribute(fn: Contributor) -> Contributor:
    """Register a commit-time contributor (a decorator; once per function)."""
    if fn not in _CONTRIBUTORS:
        _CONTRIBUTORS.append(fn)
    return fn


def defer(session: AsyncSession | Session) -> None:
    """Queue this transaction's append-only rows until its commit (see the module's docstring)."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    sync.info[_DEFER] = True


def deferring(session: AsyncSession | Session) -> bool:
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    return bool(sync.info.get(_DEFER))


def queue(session: AsyncSession, table: sa.Table, rows: Iterable[Row]) -> bool:
    """Queue ``rows`` for ``table`` when the unit of work defers its writes; ``False`` (nothing
    queued) when it does not, and the caller writes them itself."""
    info = session.sync_session.info
    if not info.get(_DEFER):
        return False
    info.setdefault(_QUEUE, []).extend((table, row) for row in rows)
    return True


def add(session: AsyncSession, obj: Any) -> bool:
    """``session.add`` for a new append-only ORM object: its row is queued instead when the unit of
    work defers its writes (``True``). The object then stays out of the session (transient): its
    values are what was queued; ``held`` finds it until the transaction ends."""
    if not queue(session, obj.__table__, [row_of(obj)]):
        session.add(obj)
        return False
    session.sync_session.info.setdefault(_HELD, []).append(obj)
    return True


def update_at_commit(session: AsyncSession, obj: Any) -> None:
    """The ORM's UPDATE of ``obj`` (persistent, one primary-key column) goes with the queued rows
    instead of on its own, when the unit of work defers its writes: at the commit its changed
    columns, as they are then, are written by the same statement (the ORM then sees it clean).
    An explicit ``session.flush()`` before the commit still writes it through the ORM."""
    info = session.sync_session.info
    if info.get(_DEFER):
        info.setdefault(_UPDATED, []).append(obj)


def _changes(session: Session) -> list[tuple[Any, Row]]:
    """The registered objects' changed columns as queued UPDATEs (their history then cleared: the
    ORM's flush finds them clean and does not look at them again)."""
    out: list[tuple[Any, Row]] = []
    for obj in session.info.pop(_UPDATED, []):
        state: Any = sa.inspect(obj)
        if not state.persistent or obj in session.deleted:
            continue
        mapper = state.mapper
        columns = _column_of(mapper)
        # Only the attributes set since the object was loaded (the ORM keeps their old values).
        touched = list(state.committed_state)
        values: Row = {}
        for key in touched:
            if key in columns:
                added = state.attrs[key].history.added
                if added:
                    values[columns[key]] = added[0]
        if not values:
            continue
        (pk,) = mapper.primary_key
        values[_PK] = state.identity[0]
        if all(key in columns for key in touched):
            # Every change is in the UPDATE: the object is as written (what the flush does after
            # its own UPDATE).
            state._commit_all(state.dict, session.identity_map)
        else:
            for key in touched:
                if key in columns and columns[key] in values:
                    set_committed_value(obj, key, values[columns[key]])
        out.append((_Update(mapper.local_table, pk.key), values))
    return out


@cache
def _column_of(mapper: Any) -> dict[str, str]:
    """A mapper's column attributes: attribute key to column key."""
    return {prop.key: prop.columns[0].key for prop in mapper.column_attrs}


class _Update:
    """A queued UPDATE's target: the table and its primary-key column (hashable, for the shape)."""

    __slots__ = ("pk", "table")

    def __init__(self, table: sa.Table, pk: str) -> None:
        self.table, self.pk = table, pk

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Update) and (self.table, self.pk) == (other.table, other.pk)

    def __hash__(self) -> int:
        return hash((self.table, self.pk))


def held(session: AsyncSession, cls: type[T], ident: Any) -> T | None:
    """The object of ``cls`` with primary key ``ident`` that this transaction queued with ``add``
    (``session.get`` cannot see it before the commit)."""
    for obj in session.sync_session.info.get(_HELD, ()):
        if type(obj) is cls and getattr(obj, "id", None) == ident:
            return obj
    return None


@cache
def _columns(cls: Any) -> tuple[tuple[str, str], ...]:
    mapper: Any = sa.inspect(cls)
    return tuple((prop.key, prop.columns[0].key) for prop in mapper.column_attrs)


def row_of(obj: Any) -> Row:
    """The row an ORM object's INSERT would write (every mapped column, as set on the object)."""
    cls: Any = type(obj)
    return {column: getattr(obj, attr) for attr, column in _columns(cls)}


def _ordered(entries: list[tuple[Any, Row]]) -> list[tuple[Any, Row]]:
    """The queued UPDATEs first, then the rows, parents' tables before children's (stable)."""
    updates = [e for e in entries if isinstance(e[0], _Update)]
    inserts = [e for e in entries if not isinstance(e[0], _Update)]
    order = _table_order(frozenset(t for t, _ in inserts))
    return updates + sorted(inserts, key=lambda e: order[e[0]])


@lru_cache(maxsize=256)
def _table_order(tables: frozenset[sa.Table]) -> dict[sa.Table, int]:
    """Parents before children (read-only: shared by every commit with these tables)."""
    return {t: i for i, t in enumerate(sa.schema.sort_tables(tables))}


def _one(target: Any, columns: tuple[str, ...], i: int) -> Any:
    """One queued row's statement with named parameters ``wb<i>_<column>``."""
    if isinstance(target, _Update):
        table = target.table
        return (
            sa.update(table)
            .where(table.c[target.pk] == sa.bindparam(f"wb{i}_{_PK}"))
            .values({c: sa.bindparam(f"wb{i}_{c}", type_=table.c[c].type) for c in columns if c != _PK})
        )
    return sa.insert(target).values({c: sa.bindparam(f"wb{i}_{c}", type_=target.c[c].type) for c in columns})


@lru_cache(maxsize=256)
def _combined(shape: tuple[tuple[Any, tuple[str, ...]], ...], tail: Executable | None) -> Executable:
    """One statement for rows of this shape (table and columns, row by row): each row's INSERT a
    data-modifying CTE of the closing statement (or of the last INSERT). Built once per shape, with
    named parameters, so the engine caches its compiled form (a multi-row VALUES has no cache key)."""
    inserts = [_one(target, columns, i) for i, (target, columns) in enumerate(shape)]
    main: Any = tail if tail is not None else inserts.pop()
    if inserts:
        main = main.add_cte(*(ins.cte(f"wb_{i}") for i, ins in enumerate(inserts)))
    return main  # type: ignore[no-any-return]


def _write(
    session: Session,
    entries: list[tuple[Any, Row]],
    tail: Executable | None = None,
    tail_params: dict[str, Any] | None = None,
) -> None:
    if not entries and tail is None:
        return
    rows = _ordered(entries)
    # Core statements on the transaction's connection: nothing here needs the ORM's execution
    # (no entities, no identity map).
    conn = session.connection()
    session.info[_FLUSHING] = True
    try:
        if (
            session.get_bind().dialect.name == "postgresql"
            and sum(len(r) for _, r in rows) <= _MAX_PARAMS
            and len(rows) <= _MAX_CTES
        ):
            params: dict[str, Any] = dict(tail_params or {})
            for i, (_, row) in enumerate(rows):
                params.update({f"wb{i}_{c}": v for c, v in row.items()})
            shape = tuple((table, tuple(row)) for table, row in rows)
            conn.execute(_combined(shape, tail), params)
            return
        # The UPDATEs, then one executemany per table and column set, in the same order.
        groups: dict[tuple[Any, tuple[str, ...]], list[Row]] = {}
        for target, row in rows:
            if isinstance(target, _Update):
                conn.execute(_one(target, tuple(row), 0), {f"wb0_{c}": v for c, v in row.items()})
            else:
                groups.setdefault((target, tuple(row)), []).append(row)
        for (table, _), group in groups.items():
            conn.execute(sa.insert(table), group)
        if tail is not None:
            conn.execute(tail, tail_params or {})
    finally:
        session.info.pop(_FLUSHING, None)


def flush(session: AsyncSession | Session) -> None:
    """Write what is queued now (sync; inside the session's greenlet), the ORM's changes first."""
    sync = session.sync_session if isinstance(session, AsyncSession) else session
    if sync.info.get(_QUEUE) and (sync.new or sync.dirty or sync.deleted):
        sync.flush()
    entries: list[tuple[sa.Table, Row]] = sync.info.pop(_QUEUE, [])
    if entries:
        _write(sync, entries)


@event.listens_for(Session, "before_commit")
def _at_commit(session: Session) -> None:
    # The ORM's changes first, in every transaction: queued rows may refer to rows it has not
    # written, and the audit chain's head row is then the last lock a transaction takes (held for
    # the last statement and the commit), in one order everywhere.
    updates = _changes(session)
    if session.new or session.dirty or session.deleted:
        session.flush()
    entries: list[tuple[Any, Row]] = updates + session.info.pop(_QUEUE, [])
    tail: Executable | None = None
    tail_params: dict[str, Any] = {}
    for contributor in _CONTRIBUTORS:
        got = contributor(session)
        if got is None:
            continue
        rows, closing, params = got
        entries.extend(rows)
        if closing is not None:
            if tail is not None:  # one closing statement per commit; run the earlier one now
                session.connection().execute(tail, tail_params)
            tail, tail_params = closing, params
    _write(session, entries, tail, tail_params)


# The names of the tables a statement reads, by statement: most reads on a hot path are statements
# built once, and walking a statement's tree costs more than the rest of this check.
_READS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def _tables_read(statement: Any) -> frozenset[str]:
    try:
        return _READS[statement]
    except KeyError:
        names = frozenset(t.name for t in sql_util.find_tables(statement, include_joins=True))
        _READS[statement] = names
        return names
    except TypeError:  # not weakly referable
        return frozenset(t.name for t in sql_util.find_tables(statement, include_joins=True))


@event.listens_for(Session, "do_orm_execute")
def _before_read(state: ORMExecuteState) -> None:
    """A read through the session of a table with queued rows sees them: write the queue first."""
    info = state.session.info
    entries = info.get(_QUEUE)
    if not entries or info.get(_FLUSHING) or not state.is_select:
        return
    read = _tables_read(state.statement)
    if any(t.name in read for t, _ in entries):
        flush(state.session)


@event.listens_for(Session, "after_commit")
def _done(session: Session) -> None:
    session.info.pop(_DEFER, None)
    session.info.pop(_HELD, None)
    session.info.pop(_UPDATED, None)


# after_soft_rollback with the outermost transaction: "after_rollback" also fires when a SAVEPOINT
# rolls back (``app_api.core.db.savepoint`` drops what was queued inside it).
@event.listens_for(Session, "after_soft_rollback")
def _dropped(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_QUEUE, None)
        session.info.pop(_DEFER, None)
        session.info.pop(_HELD, None)
        session.info.pop(_UPDATED, None)
