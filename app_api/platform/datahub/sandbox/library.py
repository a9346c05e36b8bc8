"""The sandbox's e-certificate library: a store of its own (a SQLite file under the var directory),
shared by every process that serves the sandbox and kept across their restarts, as the city's
library would be. It never reads the app's tables.

Issuing is idempotent by certificate number: the same number with the same contents is accepted
again (counted in ``issue_requests``), the same number with other contents is a conflict.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

from app_api.core.settings import VAR_DIR

DEFAULT_PATH = VAR_DIR / "sandbox" / "datahub_library.sqlite3"
# What must match for a repeated issue to be "the same certificate".
SAME = ("holder_hash", "cert_type", "title", "issuer", "issued_on", "valid_until")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS certificate (
    id TEXT NOT NULL,
    cert_no TEXT PRIMARY KEY,
    holder_hash TEXT NOT NULL,
    cert_type TEXT NOT NULL,
    title TEXT NOT NULL,
    issuer TEXT NOT NULL,
    issued_on TEXT NOT NULL,
    valid_until TEXT,
    data TEXT NOT NULL,
    source_ref TEXT,
    status TEXT NOT NULL DEFAULT 'valid',
    revoke_reason TEXT,
    issue_requests INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS certificate_holder ON certificate (holder_hash);
"""


def holder_hash(id_number: str) -> str:
    return hashlib.sha256(id_number.strip().upper().encode()).hexdigest()


class Conflict(Exception):
    pass


class Library:
    def __init__(self, path: Path = DEFAULT_PATH) -> None:
        self.path = path
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        if not self._ready:
            conn.executescript(_SCHEMA)
            self._seed_demo(conn)
            self._ready = True
        return conn

    @staticmethod
    def _seed_demo(conn: sqlite3.Connection) -> None:
        """The development demo residents' identity card and household register, as the city's
        library holds them for every resident (``wojia seed`` writes the same into the local records)."""
        from app_api.platform.demo import RESIDENTS

        for r in RESIDENTS:
            for cert_no, cert_type, title, issued_on, until, data in (
                (
                    f"ID{r.id_number[-8:]}",
                    "resident_id_card",
                    "居民身份证",
                    "2016-06-01",
                    "2036-06-01",
                    {"name": r.name},
                ),
                (f"HK{r.id_number[-8:]}", "household_register", "居民户口簿", "2010-01-01", None, {}),
            ):
                conn.execute(
                    "INSERT OR IGNORE INTO certificate (id, cert_no, holder_hash, cert_type, title, issuer,"
                    " issued_on, valid_until, data, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        uuid.uuid4().hex,
                        cert_no,
                        holder_hash(r.id_number),
                        cert_type,
                        title,
                        "亳州市公安局",
                        issued_on,
                        until,
                        json.dumps(data, ensure_ascii=False),
                        dt.datetime.now(dt.UTC).isoformat(),
                    ),
                )

    @staticmethod
    def _public(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "cert_type": row["cert_type"],
            "cert_no": row["cert_no"],
            "title": row["title"],
            "issuer": row["issuer"],
            "issued_on": row["issued_on"],
            "valid_until": row["valid_until"],
            "data": json.loads(row["data"]),
            "status": row["status"],
        }

    def _issue(self, p: dict[str, Any]) -> dict[str, Any]:
        new = {
            "holder_hash": holder_hash(str(p["holder_id_number"])),
            "cert_type": str(p["cert_type"]),
            "title": str(p["title"]),
            "issuer": str(p["issuer"]),
            "issued_on": dt.date.fromisoformat(str(p["issued_on"])).isoformat(),
            "valid_until": dt.date.fromisoformat(str(p["valid_until"])).isoformat()
            if p.get("valid_until")
            else None,
        }
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT * FROM certificate WHERE cert_no = ?", (p["cert_no"],)).fetchone()
            if row is not None:
                if any(row[k] != new[k] for k in SAME):
                    conn.execute("ROLLBACK")
                    raise Conflict(p["cert_no"])
                conn.execute(
                    "UPDATE certificate SET issue_requests = issue_requests + 1 WHERE cert_no = ?",
                    (p["cert_no"],),
                )
            else:
                conn.execute(
                    "INSERT INTO certificate (id, cert_no, holder_hash, cert_type, title, issuer, issued_on,"
                    " valid_until, data, source_ref, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        uuid.uuid4().hex,
                        str(p["cert_no"]),
                        new["holder_hash"],
                        new["cert_type"],
                        new["title"],
                        new["issuer"],
                        new["issued_on"],
                        new["valid_until"],
                        json.dumps(p.get("data") or {}, ensure_ascii=False),
                        p.get("source_ref"),
                        dt.datetime.now(dt.UTC).isoformat(),
                    ),
                )
            conn.execute("COMMIT")
            row = conn.execute("SELECT * FROM certificate WHERE cert_no = ?", (p["cert_no"],)).fetchone()
        return self._public(row)

    def _revoke(self, cert_no: str, reason: str) -> bool:
        with closing(self._connect()) as conn:
            cur = conn.execute(
                "UPDATE certificate SET status = 'revoked', revoke_reason = COALESCE(revoke_reason, ?)"
                " WHERE cert_no = ?",
                (reason, cert_no),
            )
            return cur.rowcount == 1

    def _of_holder(self, id_number: str) -> list[dict[str, Any]]:
        with closing(self._connect()) as conn:
            rows = conn.execute(
                "SELECT * FROM certificate WHERE holder_hash = ? ORDER BY issued_on, cert_no",
                (holder_hash(id_number),),
            ).fetchall()
        return [self._public(r) for r in rows]

    def _get(self, cert_no: str) -> dict[str, Any] | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM certificate WHERE cert_no = ?", (cert_no,)).fetchone()
            if row is None:
                return None
            return {
                **self._public(row),
                "issue_requests": row["issue_requests"],
                "source_ref": row["source_ref"],
            }

    async def issue(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._issue, payload)

    async def revoke(self, cert_no: str, reason: str) -> bool:
        return await asyncio.to_thread(self._revoke, cert_no, reason)

    async def of_holder(self, id_number: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._of_holder, id_number)

    async def get(self, cert_no: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._get, cert_no)
