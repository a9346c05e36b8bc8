"""Reading the access declarations of routes (used by the column gate and the route-walk test)."""

from __future__ import annotations

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
        k == "authenticated" or k.startswith(("roles:", "level:")) for k in kinds
    )
