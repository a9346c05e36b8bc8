"""Column discovery through entry points; broken columns stop start-up outside development."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from fastapi import APIRouter

from app_api.platform.capabilities import provide
from app_api.platform.column import Column

log = logging.getLogger(__name__)
GROUP = "wojia.columns"


@dataclass
class LoadedColumns:
    columns: dict[str, Column] = field(default_factory=dict)
    routers: dict[str, APIRouter] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)


class ColumnLoadError(RuntimeError):
    pass


def discover(*, strict: bool, group: str = GROUP) -> LoadedColumns:
    out = LoadedColumns()
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            module = ep.load()
            column = getattr(module, "column", None)
            if not isinstance(column, Column):
                raise ColumnLoadError(f"{ep.value} has no `column = Column.from_package(__name__)`")
            if column.slug != ep.name:
                raise ColumnLoadError(f"entry point {ep.name!r} does not match manifest slug {column.slug!r}")
            if column.slug in out.columns:
                raise ColumnLoadError(f"two columns named {column.slug!r}")
            column.submodule("models")
            router_mod = column.submodule("router")
            column.submodule("tasks")
            router = getattr(router_mod, "router", None) if router_mod else None
            if router is not None and not isinstance(router, APIRouter):
                raise ColumnLoadError(f"{column.package}.router.router is not an APIRouter")
        except Exception as e:
            if strict:
                raise ColumnLoadError(f"column {ep.name!r} failed to load: {e}") from e
            log.error("column %s failed to load and is skipped: %s", ep.name, e)
            out.broken[ep.name] = str(e)
            continue
        out.columns[column.slug] = column
        if router is not None:
            out.routers[column.slug] = router
        for protocol, impl in column.capabilities.items():
            provide(protocol, impl)
    return out
