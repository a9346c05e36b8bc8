"""The signed-HTTP convention of every house protocol (data center, billers, provident-fund center,
postal service, real-person verifier): one client side and one verifier, used by the adapters and by
their sandboxes alike.

A request carries ``x-app-id``, ``x-timestamp`` (Unix seconds), ``x-nonce`` and ``x-signature``:
base64 HMAC-SHA256 under the shared secret of::

    METHOD \\n PATH \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body))

``PATH`` is the protocol path (``/v1/waybills``), not the deployment's base URL. A signed response
(``x-signature``) covers ``TIMESTAMP \\n NONCE \\n hex(SHA-256(body))`` with the request's timestamp and
nonce, which binds the answer to the question. The convention is this project's proposal, not any
real platform's; the protocols that use it are written down in ``docs/adapters/`` (with what each
maps onto where a real interface is published).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

MAX_SKEW_S = 300

Problem = Literal["stale_timestamp", "bad_signature"]


def _mac(secret: str, msg: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), msg.encode(), hashlib.sha256).digest()).decode()


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def sign_request(secret: str, method: str, path: str, ts: str, nonce: str, body: bytes) -> str:
    return _mac(secret, "\n".join([method.upper(), path, ts, nonce, body_digest(body)]))


def sign_response(secret: str, ts: str, nonce: str, body: bytes) -> str:
    return _mac(secret, "\n".join([ts, nonce, body_digest(body)]))


@dataclass(frozen=True)
class SignedRequest:
    """The headers of one signed request; ``ts`` and ``nonce`` check the signed answer."""

    headers: dict[str, str]
    ts: str
    nonce: str


def signed_headers(
    *, app_id: str, secret: str, method: str, path: str, body: bytes, now: float | None = None
) -> SignedRequest:
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(12)
    return SignedRequest(
        headers={
            "x-app-id": app_id,
            "x-timestamp": ts,
            "x-nonce": nonce,
            "x-signature": sign_request(secret, method, path, ts, nonce, body),
        },
        ts=ts,
        nonce=nonce,
    )


def verify_request(
    headers: Mapping[str, str],
    *,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    max_skew_s: int = MAX_SKEW_S,
    now: float | None = None,
) -> Problem | None:
    """None when the request is signed with ``secret`` within the allowed clock skew."""
    ts = headers.get("x-timestamp", "")
    if not ts.isdigit() or abs((time.time() if now is None else now) - int(ts)) > max_skew_s:
        return "stale_timestamp"
    expected = sign_request(secret, method, path, ts, headers.get("x-nonce", ""), body)
    if not hmac.compare_digest(expected.encode(), headers.get("x-signature", "").encode()):
        return "bad_signature"
    return None


def verify_response(headers: Mapping[str, str], *, secret: str, request: SignedRequest, body: bytes) -> bool:
    expected = sign_response(secret, request.ts, request.nonce, body)
    return hmac.compare_digest(expected.encode(), headers.get("x-signature", "").encode())
