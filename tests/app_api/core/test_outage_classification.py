"""Which failures count as an outage of PostgreSQL or Redis (503 app.unavailable) and which stay a bug
(500): a write on a transport the dependency's death closed counts, only when raised in a driver."""

from __future__ import annotations

from typing import Any

import pytest

from app_api.core.outage import unavailable_dependency

# uvloop's words for a write on a closed transport (asyncio's read the same).
CLOSED = (
    "unable to perform operation on <TCPTransport closed=True reading=False 0x55b21a0d8ec0>; "
    "the handler is closed"
)


def _raised_in(module: str, message: str) -> RuntimeError:
    """A RuntimeError raised by code of ``module`` (as redis-py's connection code raises it)."""
    scope: dict[str, Any] = {"__name__": module}
    exec("def send(message):\n    raise RuntimeError(message)\n", scope)
    try:
        scope["send"](message)
    except RuntimeError as e:
        return e
    raise AssertionError("not raised")


@pytest.mark.parametrize("module", ["redis.asyncio.connection", "asyncpg.connection"])
def test_a_closed_transport_under_a_driver_is_an_outage(module: str) -> None:
    assert unavailable_dependency(_raised_in(module, CLOSED)) == "network"
    # Wrapped, as a handler meets it after other layers.
    try:
        raise ValueError("outer") from _raised_in(module, CLOSED)
    except ValueError as outer:
        assert unavailable_dependency(outer) == "network"


def test_the_same_words_in_the_apps_own_code_or_another_runtime_error_stay_a_bug() -> None:
    assert unavailable_dependency(_raised_in("columns.gov_services.review", CLOSED)) is None
    assert unavailable_dependency(_raised_in("redis.asyncio.connection", "dictionary changed size")) is None
    assert unavailable_dependency(RuntimeError(CLOSED)) is None  # never raised: no traceback
