"""Encryption at rest for personal data (ID numbers, phones, face templates, ID photos).

AES-256-GCM through ``cryptography``. A ciphertext is ``kid || 0x00 || nonce(12) || ct+tag``,
so that keys can be rotated: the first configured key encrypts, every configured key decrypts
(rows written under an older key stay readable while that key is configured). Lookups of
encrypted values go through a keyed hash (HMAC-SHA256) so equal plaintexts can be found without
decrypting a table.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import lru_cache
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from app_api.core.settings import get_settings


class Keyring:
    def __init__(self, spec: str, lookup_key: bytes) -> None:
        self.keys: dict[bytes, AESGCM] = {}
        self.order: list[bytes] = []
        for part in spec.split(","):
            kid, _, b64 = part.strip().partition(":")
            raw = base64.urlsafe_b64decode(b64)
            if len(raw) != 32:
                raise ValueError(f"data key {kid!r} must be 32 bytes")
            self.keys[kid.encode()] = AESGCM(raw)
            self.order.append(kid.encode())
        self.lookup_key = lookup_key

    def encrypt(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        kid = self.order[0]
        nonce = os.urandom(12)
        return kid + b"\x00" + nonce + self.keys[kid].encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        kid, sep, rest = blob.partition(b"\x00")
        if not sep or kid not in self.keys:
            raise ValueError("unknown data key")
        return self.keys[kid].decrypt(rest[:12], rest[12:], aad)

    def lookup_hash(self, value: str, *, purpose: str) -> str:
        return hmac.new(self.lookup_key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


@lru_cache
def keyring() -> Keyring:
    s = get_settings()
    return Keyring(s.data_keys.get_secret_value(), s.lookup_key.get_secret_value().encode())


def encrypt_str(value: str, *, aad: str = "") -> bytes:
    return keyring().encrypt(value.encode(), aad=aad.encode())


def decrypt_str(blob: bytes, *, aad: str = "") -> str:
    return keyring().decrypt(blob, aad=aad.encode()).decode()


def encrypt_bytes(value: bytes, *, aad: str = "") -> bytes:
    return keyring().encrypt(value, aad=aad.encode())


def decrypt_bytes(blob: bytes, *, aad: str = "") -> bytes:
    return keyring().decrypt(blob, aad=aad.encode())


def lookup_hash(value: str, *, purpose: str) -> str:
    return keyring().lookup_hash(value, purpose=purpose)


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


def mask_id_number(id_number: str) -> str:
    return id_number[:3] + "*" * (len(id_number) - 7) + id_number[-4:] if len(id_number) > 7 else "****"


def mask_name(name: str) -> str:
    return name[0] + "*" * (len(name) - 1) if name else name


def encrypted_column(
    aad: str, *, form: Literal["text", "json", "bytes"] = "text", not_exported: str | None = None
) -> dict[str, Any]:
    """``sa_column_kwargs`` of an encrypted column, declaring how it was encrypted: ``aad`` (with
    ``{column}`` placeholders filled from the row, e.g. ``"gov_app:{id}"``) and what the plaintext
    is. The resident's data export decrypts by it (their own data); ``not_exported`` says why a
    column is left out instead (a key, a biometric template). A test holds every encrypted column of
    a table tied to an account to declaring one or the other."""
    info: dict[str, Any] = {"aad": aad, "form": form}
    if not_exported:
        info["not_exported"] = not_exported
    return {"info": info}
