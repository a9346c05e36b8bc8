"""The development sandboxes' keys and merchant numbers, made once and shared by every process.

Each process of one development installation (``wojia serve --workers N``, a separate ``wojia
worker``, a test's subprocess) must sign with the keys the sandboxes it calls check: a merchant
number made up per process is unknown to the sandbox another process serves ("商户号不存在"). So the
keys are made once and kept in a JSON file (``WOJIA_PAYMENTS_SANDBOX_KEYS_FILE``, under the var
directory by default). The file is published with a hard link from a complete temporary file, which
fails when the file already exists: two processes starting at once both write a candidate, one link
wins, and both then read the winner's keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from payments.sandbox.common import new_rsa_key, pem_pkcs8_private

VERSION = 1


@dataclass(frozen=True)
class SandboxKeys:
    v2_appid: str
    v2_mch_id: str
    v2_api_key: str
    v3_platform_key: str  # PKCS#8 PEM
    v3_public_key_id: str
    v3_appid: str
    v3_mchid: str
    v3_apiv3_key: str
    v3_cert_serial_no: str
    v3_merchant_key: str  # PKCS#8 PEM
    alipay_key: str  # PKCS#8 PEM (the sandbox's own "Alipay" key)
    alipay_app_id: str
    alipay_pid: str
    alipay_app_key: str  # PKCS#8 PEM
    version: int = VERSION

    @classmethod
    def generate(cls) -> SandboxKeys:
        def pem() -> str:
            return pem_pkcs8_private(new_rsa_key())

        return cls(
            v2_appid="wx" + secrets.token_hex(8),
            v2_mch_id=str(1_900_000_000 + secrets.randbelow(99_999_999)),
            v2_api_key=secrets.token_hex(16),
            v3_platform_key=pem(),
            v3_public_key_id="PUB_KEY_ID_" + secrets.token_hex(16).upper(),
            v3_appid="wx" + secrets.token_hex(8),
            v3_mchid=str(1_600_000_000 + secrets.randbelow(99_999_999)),
            v3_apiv3_key=secrets.token_hex(16),
            v3_cert_serial_no=secrets.token_hex(20).upper(),
            v3_merchant_key=pem(),
            alipay_key=pem(),
            alipay_app_id="2021" + str(secrets.randbelow(10**12)).zfill(12),
            alipay_pid="2088" + str(secrets.randbelow(10**12)).zfill(12),
            alipay_app_key=pem(),
        )


def private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def _read(path: Path) -> SandboxKeys | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = SandboxKeys(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:  # another layout (older version) or a damaged file
        raise RuntimeError(
            f"payments sandbox keys in {path} cannot be read ({exc}); delete the file to make new ones"
        ) from exc
    return keys if keys.version == VERSION else None


def load_or_create(path: Path) -> SandboxKeys:
    """The keys in ``path``, made and published there first if there are none (atomic)."""
    existing = _read(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    candidate = SandboxKeys.generate()
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(candidate), f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):  # another process published first
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    published = _read(path)
    if published is None:
        raise RuntimeError(f"payments sandbox keys in {path} are of another version; delete the file")
    return published
