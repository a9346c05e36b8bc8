"""The shared outbound HTTP client: every call to an external system has a timeout."""

from __future__ import annotations

import functools
import ssl

import httpx

from app_api.core.settings import get_settings

_client: httpx.AsyncClient | None = None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every outbound client. Building one loads the CA bundle: 30 ms of the
    event loop each time (160 ms the first), long enough to use up a short timeout of calls
    already in flight. ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` name a city's own CA bundle."""
    return httpx.create_ssl_context()


def http_client() -> httpx.AsyncClient:
    global _client
    if _client is None or _client.is_closed:
        t = get_settings().http_timeout_s
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(t, connect=min(t, 5.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            verify=tls_context(),
            trust_env=False,
        )
    return _client


async def close_http() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
    _client = None
