"""The column's own small state: one SQLite file (the standard library's sqlite3).

Every statement is a few microseconds on a local file, so it runs on the event loop; one lock keeps
a transaction whole. A school with more traffic would use its own database server.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS pending_login (
    state TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS web_session (
    id TEXT PRIMARY KEY, sub TEXT NOT NULL, scope TEXT NOT NULL, claims TEXT NOT NULL,
    access_token TEXT NOT NULL, expires_at REAL NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS resident (
    sub TEXT PRIMARY KEY, scope TEXT NOT NULL, claims TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bill (
    id TEXT PRIMARY KEY, sub TEXT NOT NULL, student TEXT NOT NULL, term TEXT NOT NULL,
    title TEXT NOT NULL, amount_fen INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'unpaid',
    order_id TEXT, out_order_no TEXT NOT NULL UNIQUE, attempt INTEGER NOT NULL DEFAULT 1,
    paid_at TEXT, provider TEXT, refunded_fen INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS notice (
    notice_id TEXT PRIMARY KEY, event TEXT NOT NULL, order_id TEXT, body TEXT NOT NULL,
    recorded_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS delivery (
    id INTEGER PRIMARY KEY AUTOINCREMENT, notice_id TEXT NOT NULL, received_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS seen_nonce (nonce TEXT PRIMARY KEY, seen_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS refund (
    out_refund_no TEXT PRIMARY KEY, bill_id TEXT NOT NULL, amount_fen INTEGER NOT NULL,
    reason TEXT, refund_id TEXT, status TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS message (
    idempotency_key TEXT PRIMARY KEY, sub TEXT NOT NULL, template TEXT NOT NULL, params TEXT NOT NULL,
    message_id TEXT, created_at REAL NOT NULL);
"""
# Nonces of notifications are kept past the accepted clock skew, after which a replay is refused
# for its timestamp anyway.
NONCE_KEEP_S = 3600


class Store:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(sql, args).fetchone()
        return dict(row) if row else None

    def all(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._db.execute(sql, args).fetchall()]

    # --- sign-in ---------------------------------------------------------------------------------

    def begin_login(self, state: str, nonce: str, verifier: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM pending_login WHERE created_at < ?", (time.time() - 600,))
            db.execute("INSERT INTO pending_login VALUES (?, ?, ?, ?)", (state, nonce, verifier, time.time()))

    def take_login(self, state: str) -> dict[str, Any] | None:
        """The sign-in this state belongs to, once (a replayed callback finds nothing)."""
        with self.tx() as db:
            row = db.execute(
                "SELECT * FROM pending_login WHERE state = ? AND created_at > ?", (state, time.time() - 600)
            ).fetchone()
            db.execute("DELETE FROM pending_login WHERE state = ?", (state,))
        return dict(row) if row else None

    def new_session(
        self, *, sub: str, scope: str, claims: dict[str, Any], access_token: str, ttl: int
    ) -> str:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO web_session VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sid, sub, scope, json.dumps(claims, ensure_ascii=False), access_token, now + ttl, now),
            )
            db.execute(
                "INSERT INTO resident VALUES (?, ?, ?, ?) ON CONFLICT(sub) DO UPDATE SET "
                "scope = excluded.scope, claims = excluded.claims, updated_at = excluded.updated_at",
                (sub, scope, json.dumps(claims, ensure_ascii=False), now),
            )
        return sid

    def session(self, sid: str) -> dict[str, Any] | None:
        row = self.one("SELECT * FROM web_session WHERE id = ? AND expires_at > ?", sid, time.time())
        if row:
            row["claims"] = json.loads(row["claims"])
        return row

    def end_session(self, sid: str) -> None:
        with self.tx() as db:
            db.execute("DELETE FROM web_session WHERE id = ?", (sid,))

    def residents(self) -> list[dict[str, Any]]:
        rows = self.all("SELECT * FROM resident ORDER BY updated_at")
        for r in rows:
            r["claims"] = json.loads(r["claims"])
        return rows

    # --- bills -----------------------------------------------------------------------------------

    def ensure_demo_bill(self, sub: str, *, student: str, term: str, amount_fen: int) -> None:
        """The demo's stand-in for a school's roster: each resident who signs in owes one term's fee."""
        with self.tx() as db:
            if db.execute("SELECT 1 FROM bill WHERE sub = ?", (sub,)).fetchone():
                return
            bill_id = secrets.token_hex(8)
            db.execute(
                "INSERT INTO bill (id, sub, student, term, title, amount_fen, out_order_no) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (bill_id, sub, student, term, f"{term}学费", amount_fen, "SF" + bill_id),
            )

    def bills_of(self, sub: str) -> list[dict[str, Any]]:
        return self.all("SELECT * FROM bill WHERE sub = ? ORDER BY id", sub)

    def bill(self, bill_id: str) -> dict[str, Any] | None:
        return self.one("SELECT * FROM bill WHERE id = ?", bill_id)

    def set_order(self, bill_id: str, order_id: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE bill SET order_id = ?, status = CASE status WHEN 'unpaid' THEN 'paying' "
                "ELSE status END WHERE id = ?",
                (order_id, bill_id),
            )

    def reopen(self, out_order_no: str) -> None:
        """The platform closed the unpaid order (its payment window passed): the bill is payable
        again under a new order number, since the closed number answers with the closed order."""
        with self.tx() as db:
            self._reopen(db, out_order_no)

    @staticmethod
    def _reopen(db: sqlite3.Connection, out_order_no: str) -> None:
        db.execute(
            "UPDATE bill SET status = 'unpaid', order_id = NULL, attempt = attempt + 1, "
            "out_order_no = 'SF' || id || '-' || (attempt + 1) WHERE out_order_no = ? AND status != 'paid'",
            (out_order_no,),
        )

    def set_refunded(self, bill_id: str, refunded_fen: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE bill SET refunded_fen = ? WHERE id = ?", (refunded_fen, bill_id))

    # --- notifications ---------------------------------------------------------------------------

    def spend_nonce(self, nonce: str) -> bool:
        """False when this nonce was seen before: a replayed notification."""
        now = time.time()
        with self.tx() as db:
            db.execute("DELETE FROM seen_nonce WHERE seen_at < ?", (now - NONCE_KEEP_S,))
            cur = db.execute("INSERT OR IGNORE INTO seen_nonce VALUES (?, ?)", (nonce, now))
        return cur.rowcount == 1

    def record_notice(self, notice: dict[str, Any]) -> bool:
        """Record a notification once, whatever the redeliveries: True the first time.

        The notice and what it changes (the bill paid) are written in one transaction, so a crash
        between them cannot leave one without the other; the platform then delivers again.
        """
        now = time.time()
        with self.tx() as db:
            db.execute(
                "INSERT INTO delivery (notice_id, received_at) VALUES (?, ?)", (notice["notice_id"], now)
            )
            cur = db.execute(
                "INSERT OR IGNORE INTO notice VALUES (?, ?, ?, ?, ?)",
                (
                    notice["notice_id"],
                    notice.get("event", ""),
                    notice.get("order_id"),
                    json.dumps(notice, ensure_ascii=False),
                    now,
                ),
            )
            first = cur.rowcount == 1
            if first and notice.get("event") == "order.paid":
                db.execute(
                    "UPDATE bill SET status = 'paid', paid_at = ?, provider = ?, order_id = ? "
                    "WHERE out_order_no = ? AND amount_fen = ?",
                    (
                        notice.get("paid_at"),
                        notice.get("provider"),
                        notice.get("order_id"),
                        notice.get("out_order_no"),
                        notice.get("amount_fen"),
                    ),
                )
            elif first and notice.get("event") == "order.closed":
                self._reopen(db, str(notice.get("out_order_no", "")))
            elif first and str(notice.get("event", "")).startswith("refund."):
                # refund.succeeded / refund.failed: the refund went back to the resident, or did not.
                db.execute(
                    "UPDATE refund SET status = ?, refund_id = ? WHERE out_refund_no = ?",
                    (
                        notice["event"].removeprefix("refund."),
                        notice.get("refund_id"),
                        notice.get("out_refund_no"),
                    ),
                )
        return first

    def notices(self) -> list[dict[str, Any]]:
        rows = self.all(
            "SELECT n.*, (SELECT COUNT(*) FROM delivery d WHERE d.notice_id = n.notice_id) AS deliveries "
            "FROM notice n ORDER BY recorded_at"
        )
        for r in rows:
            r["body"] = json.loads(r["body"])
        return rows

    # --- refunds and messages --------------------------------------------------------------------

    def refund_for(
        self, out_refund_no: str, bill_id: str, amount_fen: int, reason: str | None
    ) -> dict[str, Any]:
        """The refund row under this number, written before the platform is asked, so a retry after a
        lost answer sends the same number (the platform's idempotency key)."""
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO refund VALUES (?, ?, ?, ?, NULL, 'new', ?)",
                (out_refund_no, bill_id, amount_fen, reason, time.time()),
            )
            row = db.execute("SELECT * FROM refund WHERE out_refund_no = ?", (out_refund_no,)).fetchone()
        return dict(row)

    def refund_answered(self, out_refund_no: str, refund_id: str | None, status: str) -> None:
        with self.tx() as db:
            db.execute(
                "UPDATE refund SET refund_id = COALESCE(?, refund_id), status = ? WHERE out_refund_no = ?",
                (refund_id, status, out_refund_no),
            )

    def refunds_of(self, bill_id: str) -> list[dict[str, Any]]:
        return self.all("SELECT * FROM refund WHERE bill_id = ? ORDER BY created_at", bill_id)

    def message_for(self, key: str, sub: str, template: str, params: dict[str, str]) -> dict[str, Any]:
        with self.tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO message VALUES (?, ?, ?, ?, NULL, ?)",
                (key, sub, template, json.dumps(params, ensure_ascii=False), time.time()),
            )
            row = db.execute("SELECT * FROM message WHERE idempotency_key = ?", (key,)).fetchone()
        return dict(row)

    def message_sent(self, key: str, message_id: str) -> None:
        with self.tx() as db:
            db.execute("UPDATE message SET message_id = ? WHERE idempotency_key = ?", (message_id, key))
