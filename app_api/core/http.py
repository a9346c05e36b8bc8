"""The shared outbound HTTP client: every call to an external system has a timeout."""

from __future__ import annotations

import httpx

from app_api.core.settings import get_settings

_client: httpx.AsyncClient | None = None


def http_client() -> httpx.AsyncClient:
    global _client
    if _client is None or _client.is_closed:
        t = get_settings().http_timeout_s
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(t, connect=min(t, 5.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            trust_env=False,
        )
    return _client


async def close_http() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
    _client = None
