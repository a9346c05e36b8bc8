"""The platform's request signature, written from docs/openplatform.md (no platform code imported).

Every cashier call a column makes, and every notification the platform posts to the column, carries
``x-app-id``, ``x-timestamp`` (Unix seconds), ``x-nonce`` and ``x-signature``: base64 HMAC-SHA256,
keyed with the column's cashier key, of five lines joined by ``\\n``::

    METHOD
    PATH            (no host, no query)
    TIMESTAMP
    NONCE
    hex(SHA-256(body bytes as sent))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping

MAX_SKEW_S = 300
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def string_to_sign(method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, ts, nonce, hashlib.sha256(body).hexdigest()])


def sign(key: str, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    text = string_to_sign(method, path, ts, nonce, body)
    return base64.b64encode(hmac.new(key.encode(), text.encode(), hashlib.sha256).digest()).decode()


def headers(
    *, app_id: str, key: str, method: str, path: str, body: bytes, now: float | None = None
) -> dict[str, str]:
    """The four headers of a signed request (a fresh nonce each time: a retry is signed anew)."""
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(18)
    return {
        "x-app-id": app_id,
        "x-timestamp": ts,
        "x-nonce": nonce,
        "x-signature": sign(key, method, path, ts, nonce, body),
    }


def verify(
    received: Mapping[str, str],
    *,
    app_id: str,
    key: str,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
    max_skew_s: int = MAX_SKEW_S,
) -> str | None:
    """None when the request was signed by the platform with our key; else why not.

    The caller must still refuse a nonce it has seen before (a replay of a genuine request).
    """
    h = {k.lower(): v for k, v in received.items()}
    if not hmac.compare_digest(h.get("x-app-id", "").encode(), app_id.encode()):
        return "wrong_app_id"
    ts = h.get("x-timestamp", "")
    if not ts.isdigit() or abs((time.time() if now is None else now) - int(ts)) > max_skew_s:
        return "stale_timestamp"
    nonce = h.get("x-nonce", "")
    if not _NONCE.fullmatch(nonce):
        return "bad_nonce"
    expected = sign(key, method, path, ts, nonce, body)
    if not hmac.compare_digest(expected.encode(), h.get("x-signature", "").encode()):
        return "bad_signature"
    return None
