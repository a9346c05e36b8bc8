"""Uploaded materials: checked by what the bytes are, not by what the client says, and stored encrypted.

Accepted: PDF, JPEG, PNG and OFD (China's fixed-layout format, GB/T 33190: a ZIP package whose
root holds ``OFD.xml``). A file whose content disagrees with its declared type is refused, as is an
empty or oversized one. The name shown to reviewers is cleaned (``display_name``): no path, no
control or bidirectional-override characters, NFC, at most ``DISPLAY_MAX`` characters, and an
extension that says what the bytes are (a JPEG sent as ``photo.pdf`` is shown as ``photo.jpg``).
Stored encrypted in a local folder (the embedded default) or in S3-compatible object storage
(``WOJIA_COLUMN_GOV_SERVICES_STORAGE=s3``).
"""

from __future__ import annotations

import asyncio
import io
import re
import unicodedata
import zipfile
from pathlib import Path
from typing import Protocol

import filetype

from app_api.core.crypto import decrypt_bytes, encrypt_bytes
from columns.gov_services.errors import UploadRejected, UploadTooLarge
from columns.gov_services.s3 import S3Storage

KINDS = {"application/pdf": "pdf", "image/jpeg": "jpeg", "image/png": "png"}
EXTENSIONS = {"pdf": (".pdf",), "jpeg": (".jpg", ".jpeg"), "png": (".png",), "ofd": (".ofd",)}
DECLARED = {
    "pdf": ("application/pdf",),
    "jpeg": ("image/jpeg", "image/jpg", "image/pjpeg"),
    "png": ("image/png",),
    "ofd": ("application/ofd", "application/zip", "application/x-zip-compressed"),
}
GENERIC_TYPES = ("", "application/octet-stream", "binary/octet-stream")
# The extension a display name gets for each kind (".jpeg" is kept when the resident wrote it).
DISPLAY_EXT = {"pdf": ".pdf", "jpeg": ".jpg", "png": ".png", "ofd": ".ofd"}
DISPLAY_MAX = 100
# Removed from display names: control, format (bidi overrides and isolates, LRM/RLM, zero-width
# characters, BOM), surrogate, private-use and unassigned code points, line and paragraph separators.
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
# What counts as an extension to replace: a short run of letters and digits, not only digits
# ("v1.2" keeps its ".2").
_EXTENSION = re.compile(r"\.([A-Za-z0-9]{1,8})$")


def sniff(data: bytes) -> str | None:
    """The accepted kind the bytes really are, or None."""
    guess = filetype.guess(data)
    if guess is None:
        return None
    if guess.mime in KINDS:
        return KINDS[guess.mime]
    if guess.mime == "application/zip":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if "OFD.xml" in z.namelist():
                    return "ofd"
        except zipfile.BadZipFile:
            return None
    return None


def check_upload(data: bytes, *, declared_type: str | None, max_bytes: int) -> str:
    """Return the kind of an acceptable upload; raise a clear error otherwise. The file name plays no
    part: its extension is replaced by the kind's (``display_name``)."""
    if not data:
        raise UploadRejected("文件为空，请重新选择")
    if len(data) > max_bytes:
        raise UploadTooLarge(f"文件不能超过 {max_bytes // (1024 * 1024)}MB", max_bytes=max_bytes)
    kind = sniff(data)
    if kind is None:
        raise UploadRejected("仅支持 PDF、JPG、PNG、OFD 格式的文件")
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES and declared not in DECLARED[kind]:
        raise UploadRejected("文件内容与声明的类型不符", detected=kind, declared=declared)
    return kind


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if ch.isspace() else ch for ch in text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROP_CATEGORIES)
    return " ".join(text.split())


def display_name(filename: str, kind: str, *, fallback: str = "材料") -> str:
    """The name reviewers see for an upload of ``kind``: the last path component (``/`` or ``\\``),
    without control or bidi characters, NFC-normalised, at most ``DISPLAY_MAX`` characters, ending
    in the extension of what the bytes are (a lying or missing extension is replaced)."""
    name = _clean(filename.replace("\\", "/").rsplit("/", 1)[-1])
    ext = DISPLAY_EXT[kind]
    found = _EXTENSION.search(name)
    if found is not None and not found.group(1).isdigit():
        given = "." + found.group(1).lower()
        if given in EXTENSIONS[kind]:
            ext = given
        name = name[: found.start()]
    stem = name.strip(" .")
    if not stem:
        stem = _clean(fallback.replace("\\", "/").replace("/", "_")).strip(" .") or "材料"
    stem = stem[: DISPLAY_MAX - len(ext)].rstrip(" .") or "材料"
    return stem + ext


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...
    async def get(self, key: str) -> bytes: ...


class LocalStorage:
    """Files under a local folder (the embedded default), encrypted with the data key."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("storage key escapes the storage root")
        return path

    def _write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(encrypt_bytes(data, aad=f"gov_upload:{key}"))
        tmp.replace(path)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, key, data)

    async def get(self, key: str) -> bytes:
        blob = await asyncio.to_thread(self._path(key).read_bytes)
        return decrypt_bytes(blob, aad=f"gov_upload:{key}")


class EncryptedS3Storage:
    """S3-compatible object storage (production); objects are encrypted before they leave."""

    def __init__(self, s3: S3Storage) -> None:
        self.s3 = s3

    async def put(self, key: str, data: bytes) -> None:
        await self.s3.put_raw(key, encrypt_bytes(data, aad=f"gov_upload:{key}"))

    async def get(self, key: str) -> bytes:
        return decrypt_bytes(await self.s3.get_raw(key), aad=f"gov_upload:{key}")


def get_storage() -> Storage:
    from columns.gov_services.config import get_config

    cfg = get_config()
    if cfg.storage == "s3":
        return EncryptedS3Storage(
            S3Storage(
                endpoint=cfg.s3_url,
                bucket=cfg.s3_bucket,
                access_key=cfg.s3_access_key,
                secret_key=cfg.s3_secret_key.get_secret_value(),
                region=cfg.s3_region,
                prefix=cfg.s3_prefix,
            )
        )
    return LocalStorage(cfg.upload_dir)
