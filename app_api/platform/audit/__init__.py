"""Append-only, hash-chained audit log.

``record()`` only queues the entry on the session, with the digest of what it says
(``content_hash``); the chain is extended in the session's ``before_commit`` hook, right before the
transaction commits, each entry's ``hash`` linking its content's digest to the entry before it.
Appends are serialised by a row lock on the single ``app_audit_head`` row, held only for the end of
the transaction: on PostgreSQL the commit statement itself locks it (``FOR UPDATE``), links the
entries in SQL and moves it; on SQLite (and for a transaction with many entries) an
``UPDATE ... RETURNING`` reserves their places first. Entries of a rolled-back transaction never
reach the chain. Entries written before ``content_hash`` existed hash content and place together
and are checked that way."""

from __future__ import annotations

from app_api.platform.audit.service import record, verify_chain

__all__ = ["record", "verify_chain"]
