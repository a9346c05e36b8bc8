"""Alembic environment: one branch per package, async engines, SQLite and PostgreSQL alike.

``-x package=<name>`` limits autogenerate to that package's tables (by table-name prefix), so each
package writes migrations for its own tables only.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from app_api.core.db import make_engine
from app_api.wiring.migrate import import_all_models, table_prefix

config = context.config
import_all_models()
target_metadata = SQLModel.metadata
package = context.get_x_argument(as_dictionary=True).get("package")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "table" and name == "alembic_version":
        return False
    if package and type_ == "table" and name is not None:
        return name.startswith(table_prefix(package))
    if package and hasattr(obj, "table") and getattr(obj.table, "name", None):
        return str(obj.table.name).startswith(table_prefix(package))
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    from app_api.core.db import UTCDateTime

    if type_ == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("import app_api.core.db")
        return "app_api.core.db.UTCDateTime()"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        render_as_batch=True,
        render_item=render_item,
        compare_type=True,
        user_module_prefix="sqlmodel.sql.sqltypes.",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = make_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
asyncio.run(_main())
