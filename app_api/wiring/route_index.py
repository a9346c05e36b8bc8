"""An index in front of the app's router: which top-level route serves a (method, path).

A workaround for FastAPI 0.163's route matching. FastAPI keeps each ``include_router`` as a lazy
``_IncludedRouter``; for every request the app's router tries its routes in order, and each
included router on the way recomputes its routes version (``_get_routes_version``, a walk over its
route tree) and tries every one of its routes' patterns, saving and restoring scope keys around
each; the router that matches then does it all again to dispatch. The api includes about forty
routers, so ``GET /api/v1/home`` was found after some fifty pattern matches, done twice, on every
request (a quarter of its CPU time in-process).

The index remembers, per (method, path, root path), the top-level route that matched fully, and
next time asks only that one whether it still matches fully (FastAPI's own dispatch inside it is
unchanged, so dependencies, scope keys and telemetry are what they were). No entry, an entry that
no longer matches fully, websockets and lifespan go through FastAPI's own loop, unchanged, as do
partial matches (405) and redirects, which are never remembered. The index is emptied when the
app's routes change (their version, checked at most once a second, and the top level's own
counter on every request), and when it holds ``MAX_ENTRIES`` paths (paths with ids in them).

Plain handlers. FastAPI's dependency resolution (``solve_dependencies``, with the ``Request`` and
query parameters it builds) was a third of the CPU of ``GET /api/v1/home``. An endpoint whose
dependencies are plain may carry ``__wojia_asgi__``, an ASGI handler doing the same work (the same
checks, errors and answer) without it. The index learns it from FastAPI's own dispatch: once a GET
(method, path, root path) without path parameters has been served by such an endpoint, later ones go
straight to its handler, with the scope keys FastAPI set (``route``, ``endpoint``, ``path_params``).
Errors the handler raises reach the app's exception handlers as the endpoint's would. FastAPI serves
the path itself whenever the app has dependency overrides (tests) or FastAPI's own OpenTelemetry is
recording the request (it would trace the dependencies), and the learned handlers are forgotten with
the index.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.routing import APIRouter

# FastAPI's telemetry hook, called as FastAPI's own router loop calls it (FastAPI is pinned).
from fastapi.telemetry._api import _route_selected
from starlette.routing import BaseRoute, Host, Match, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

# The attribute of an endpoint that names its plain ASGI handler (see the module docstring).
PLAIN_HANDLER = "__wojia_asgi__"

MAX_ENTRIES = 4096
# How often the version of the whole route tree is recomputed (a walk over every router).
VERSION_CHECK_S = 1.0


class RouteIndex:
    """Stands in for ``router.middleware_stack`` (Starlette's router calls it for every scope)."""

    def __init__(self, router: APIRouter) -> None:
        self.router = router
        self.fallback: ASGIApp = router.middleware_stack
        self.entries: dict[tuple[str, str, str], BaseRoute] = {}
        # (method, path, root path) -> (plain handler, the scope keys FastAPI's dispatch set).
        self.plain: dict[tuple[str, str, str], tuple[ASGIApp, dict[str, object]]] = {}
        self._top_version = router._routes_version
        self._tree_version = router._get_routes_version()
        self._checked_at = time.monotonic()

    def _current(self) -> None:
        router = self.router
        now = time.monotonic()
        changed = router._routes_version != self._top_version
        if not changed and now - self._checked_at >= VERSION_CHECK_S:
            self._checked_at = now
            changed = router._get_routes_version() != self._tree_version
        if changed:
            self.entries.clear()
            self.plain.clear()
            self._top_version = router._routes_version
            self._tree_version = router._get_routes_version()

    def lookup(self, scope: Scope) -> BaseRoute | None:
        """The first top-level route that matches ``scope`` fully (what FastAPI's loop would pick)."""
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return route
            if match is Match.PARTIAL:
                return None  # FastAPI prefers a later full match: leave this path to it
        return None

    def _learn(self, key: tuple[str, str, str], scope: Scope) -> None:
        """After FastAPI served ``key``: remember the endpoint's plain handler, if it has one."""
        handler = getattr(scope.get("endpoint"), PLAIN_HANDLER, None)
        if handler is None or key[0] != "GET" or scope.get("path_params") or "route" not in scope:
            return
        if len(self.plain) >= MAX_ENTRIES:
            self.plain.clear()
        self.plain[key] = (
            handler,
            {"route": scope["route"], "endpoint": scope["endpoint"], "path_params": {}},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        self._current()
        key = (scope["method"], scope["path"], scope.get("root_path", ""))
        plain = self.plain.get(key)
        if plain is not None and "fastapi.telemetry" not in scope and not scope["app"].dependency_overrides:
            if "router" not in scope:
                scope["router"] = self.router
            scope.update(plain[1])
            await plain[0](scope, receive, send)
            return
        route = self.entries.get(key)
        if route is not None:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                if "router" not in scope:
                    scope["router"] = self.router
                scope.update(child_scope)
                _route_selected(
                    scope=scope,
                    path=getattr(route, "path_format", None),
                    mount=isinstance(route, Mount),
                )
                await route.handle(scope, receive, send)
                self._learn(key, scope)
                return
            del self.entries[key]
            self.plain.pop(key, None)
        else:
            found = self.lookup(scope)
            if found is not None:
                if len(self.entries) >= MAX_ENTRIES:
                    self.entries.clear()
                self.entries[key] = found
        await self.fallback(scope, receive, send)


def install_route_index(app: FastAPI) -> RouteIndex | None:
    """Put a :class:`RouteIndex` in front of ``app``'s router (not with host-based routes, whose
    matching depends on a header the index does not key on)."""
    if any(isinstance(route, Host) for route in app.router.routes):
        return None
    index = RouteIndex(app.router)
    app.router.middleware_stack = index
    return index
