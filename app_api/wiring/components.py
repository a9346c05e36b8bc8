"""Finding the components (``wojia.components`` entry points) and the columns (``wojia.columns``).

Components are part of the app: one that fails to import is a bug and stops start-up. Their order is
the entry points' names; routers do not overlap, so the order only decides the OpenAPI listing.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from app_api.core.component import Component

GROUP = "wojia.components"


class ComponentLoadError(RuntimeError):
    pass


@lru_cache
def components() -> tuple[Component, ...]:
    found: list[Component] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        component = ep.load()
        if not isinstance(component, Component):
            raise ComponentLoadError(f"entry point {ep.name!r} ({ep.value}) is not a Component")
        found.append(component)
    names = [c.name for c in found]
    if len(set(names)) != len(names):
        raise ComponentLoadError(f"two components share a name: {sorted(names)}")
    return tuple(found)


def packages() -> list[str]:
    """Top-level packages with components, ``app_api`` first (its branch is every other's base)."""
    out = sorted({c.package for c in components()}, key=lambda p: (p != "app_api", p))
    return out
