"""Wojia's api.

One start-up measure lives here, where every process of the project passes first: httpx's package
imports its command-line client (click, rich, pygments: ~0.17 s CPU and ~5 MB per process) whenever
those are installed, and typer brings rich. No process of the project runs that client, so httpx is
imported without it and ``httpx.main`` loads it on its first call (issue 19: a lighter api process).
"""

import sys as _sys


def _import_httpx_without_its_cli() -> None:
    if "httpx" in _sys.modules or "httpx._main" in _sys.modules:
        return
    _sys.modules["httpx._main"] = None  # type: ignore[assignment]  # "not available" to the import system
    try:
        import httpx
    finally:
        if _sys.modules.get("httpx._main", 0) is None:
            del _sys.modules["httpx._main"]

    def main(*args: object, **kwargs: object) -> object:
        from httpx._main import main as cli

        return cli(*args, **kwargs)

    httpx.main = main  # type: ignore[assignment]


_import_httpx_without_its_cli()
