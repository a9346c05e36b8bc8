"""A pooled PostgreSQL connection is tried before each use in one round trip, and a connection the
server dropped is replaced without the request failing (``app_api.core.db._ping``)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa


@pytest.fixture
def postgres(is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("the ping is PostgreSQL's (SQLite opens a file)")


async def _terminate_others() -> int:
    """Kill every other connection to the test database, as a restart of the server or an
    administrator would; the pool still holds them."""
    import asyncpg

    url = os.environ["WOJIA_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(killed)
    finally:
        await conn.close()


async def test_a_connection_the_server_dropped_is_replaced_before_the_request_uses_it(postgres: None) -> None:
    from app_api.core.db import session_scope

    async with session_scope() as s:
        pid_before = (await s.exec(sa.select(sa.func.pg_backend_pid()))).one()  # type: ignore[call-overload]
    assert await _terminate_others() >= 1
    async with session_scope() as s:
        pid_after = (await s.exec(sa.select(sa.func.pg_backend_pid()))).one()  # type: ignore[call-overload]
        assert (await s.exec(sa.select(sa.literal(1)))).one() == (1,)  # type: ignore[call-overload]
    assert pid_after != pid_before


async def test_the_ping_is_one_query_outside_any_transaction(
    postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncpg.connection

    from app_api.core.db import make_engine

    calls: list[str] = []
    real_execute = asyncpg.connection.Connection.execute
    real_fetchrow = asyncpg.connection.Connection.fetchrow
    real_transaction = asyncpg.connection.Connection.transaction

    async def execute(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"execute {query}")
        return await real_execute(self, query, *args, **kwargs)

    async def fetchrow(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"fetchrow {query}")
        return await real_fetchrow(self, query, *args, **kwargs)

    def transaction(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append("transaction")
        return real_transaction(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.connection.Connection, "execute", execute)
    monkeypatch.setattr(asyncpg.connection.Connection, "fetchrow", fetchrow)
    monkeypatch.setattr(asyncpg.connection.Connection, "transaction", transaction)
    # An engine of its own, as the app makes it: its pool holds only what this test gave back.
    engine = make_engine(os.environ["WOJIA_DATABASE_URL"])
    backend_pid = sa.select(sa.func.pg_backend_pid())
    try:
        async with engine.connect() as conn:  # a new connection: not tried (the dialect reads the server)
            pid = (await conn.execute(backend_pid)).scalar_one()
        calls.clear()
        async with engine.connect() as conn:  # the same one, from the pool: tried
            tried = list(calls)  # what the checkout did, before anything of the caller's
            again = (await conn.execute(backend_pid)).scalar_one()
    finally:
        await engine.dispose()
    # One query outside any transaction, and the connection kept (it answered).
    assert tried == ["execute SELECT 1"]
    assert again == pid
