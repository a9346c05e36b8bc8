"""Jinja2 environments built on first render.

The api's HTML pages (consoles, workbenches, consent and cashier screens) are rare next to its JSON:
declaring their environments at import time loaded jinja2 into every api worker at start-up
(issue 19: a lighter process). ``LazyEnvironment`` keeps the module-level declaration, filters and
globals included, and builds the ``Environment`` the first time a template is asked for.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2 import Environment, Template


class LazyEnvironment:
    """``build()`` makes the ``Environment`` on first use; ``filters`` and ``globals`` set before
    then are copied into it, and after then are the environment's own."""

    def __init__(self, build: Callable[[], Environment]) -> None:
        self._build = build
        self._env: Environment | None = None
        self._lock = threading.Lock()
        self.filters: dict[str, Callable[..., Any]] = {}
        self.globals: dict[str, Any] = {}

    @property
    def env(self) -> Environment:
        env = self._env
        if env is None:
            with self._lock:
                env = self._env
                if env is None:
                    env = self._build()
                    env.filters.update(self.filters)
                    env.globals.update(self.globals)
                    self.filters, self.globals = env.filters, env.globals
                    self._env = env
        return env

    def get_template(self, name: str) -> Template:
        return self.env.get_template(name)


class LazyTemplate:
    """A template from a string, compiled on first render (with autoescaping on)."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._template: Template | None = None

    def render(self, **context: Any) -> str:
        template = self._template
        if template is None:
            from jinja2 import Environment, select_autoescape

            # Compiling twice under a race is harmless: both results are the same template.
            template = Environment(autoescape=select_autoescape(default=True)).from_string(self._source)
            self._template = template
        return template.render(**context)
