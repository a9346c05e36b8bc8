"""Uploaded materials: checked by what the bytes are, not by what the client says, and stored encrypted.

Accepted: PDF, JPEG, PNG and OFD (China's fixed-layout format, GB/T 33190: a ZIP package whose
root holds ``OFD.xml``). A file whose content disagrees with its extension or declared type is
refused, as is an empty or oversized one. Stored encrypted in a local folder (the embedded default)
or in S3-compatible object storage (``WOJIA_COLUMN_GOV_SERVICES_STORAGE=s3``).
"""

from __future__ import annotations

import asyncio
import io
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


def check_upload(data: bytes, *, filename: str, declared_type: str | None, max_bytes: int) -> str:
    """Return the kind of an acceptable upload; raise a clear error otherwise."""
    if not data:
        raise UploadRejected("文件为空，请重新选择")
    if len(data) > max_bytes:
        raise UploadTooLarge(f"文件不能超过 {max_bytes // (1024 * 1024)}MB", max_bytes=max_bytes)
    kind = sniff(data)
    if kind is None:
        raise UploadRejected("仅支持 PDF、JPG、PNG、OFD 格式的文件")
    ext = Path(filename).suffix.lower()
    if ext and ext not in EXTENSIONS[kind]:
        raise UploadRejected("文件内容与扩展名不符", detected=kind, extension=ext)
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared not in GENERIC_TYPES and declared not in DECLARED[kind]:
        raise UploadRejected("文件内容与声明的类型不符", detected=kind, declared=declared)
    return kind


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
                endpoint=cfg.s3_endpoint,
                bucket=cfg.s3_bucket,
                access_key=cfg.s3_access_key,
                secret_key=cfg.s3_secret_key.get_secret_value(),
                region=cfg.s3_region,
                prefix=cfg.s3_prefix,
            )
        )
    return LocalStorage(cfg.upload_dir)
