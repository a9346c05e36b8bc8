"""The component descriptor: what one package below the columns contributes to the app.

Every platform package (accounts, agents, audit, ...) and every service package (payments, identity,
the mini-program bridge, the assistant) exposes ``component = Component(...)`` in its ``component``
module and registers it under the entry-point group ``wojia.components`` in ``pyproject.toml``, the
same way columns register under ``wojia.columns``. The wiring (``app_api.wiring.components``) finds
them there and nowhere else: routers, development sandboxes, job modules, models, demo data and
start/stop hooks are all read from these descriptors.

Importing a component module imports its routers, models and task modules, so the api, the worker
and the migrations see the same tables and jobs. Sandboxes and seeds are callables: their modules
are imported only in development (sandboxes are not shipped in the built wheel).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastapi import APIRouter
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import ASGIApp

API_PREFIX = "/api/v1"


@dataclass(frozen=True)
class Mount:
    """A router included in the app under ``prefix``."""

    router: APIRouter
    prefix: str = API_PREFIX


@dataclass(frozen=True)
class Sandbox:
    """A development-only protocol sandbox served at ``prefix``.

    ``build`` imports the sandbox and returns a router (included) or an ASGI app (mounted), or None
    when the deployment's settings do not point at it. ``lazy``: ``build`` returns an ASGI app or
    None and is called on the first request under ``prefix`` instead of at start-up (a None then
    answers 404, as an unmounted path does), so a worker that never serves the sandbox never
    imports it.
    """

    prefix: str
    build: Callable[[], APIRouter | ASGIApp | None]
    lazy: bool = False


@dataclass(frozen=True)
class Component:
    """One package's contribution; every field but ``name`` is optional."""

    name: str
    routers: tuple[Mount, ...] = ()
    sandboxes: tuple[Sandbox, ...] = ()
    # Imported for their side effect: task modules register jobs with the broker, model modules
    # register tables with the metadata. Holding the modules keeps the import explicit.
    tasks: tuple[ModuleType, ...] = ()
    models: tuple[ModuleType, ...] = ()
    seed: Callable[[AsyncSession], Awaitable[Any]] | None = None
    startup: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None

    @property
    def package(self) -> str:
        """The top-level package, which is also the component's migration branch."""
        return self.name.split(".", 1)[0]
