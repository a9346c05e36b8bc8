"""Reading the access declarations of routes (used by the column gate and the route-walk test)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant


def access_kinds(dependant: Dependant, *, skip_gates: bool = True) -> set[str]:
    kinds: set[str] = set()
    stack = [dependant]
    while stack:
        d = stack.pop()
        call = d.call
        if call is not None:
            if skip_gates and getattr(call, "__wojia_gate__", False):
                continue
            kind = getattr(call, "__wojia_access__", None)
            if kind:
                kinds.add(kind)
        stack.extend(d.dependencies)
    return kinds


def is_open(kinds: set[str]) -> bool:
    return bool(kinds & {"public", "optional"}) and not any(
        k == "authenticated" or k.startswith("roles:") for k in kinds
    )


def iter_api_routes(app: Any) -> Iterator[tuple[str, set[str], Dependant]]:
    """(path, methods, dependant) of every API route, through included routers, with their dependencies."""
    from fastapi.routing import iter_route_contexts

    for ctx in iter_route_contexts(app.routes):
        dependant = getattr(ctx, "dependant", None)
        if isinstance(dependant, Dependant):
            yield str(ctx.path), set(ctx.methods or ()), dependant
