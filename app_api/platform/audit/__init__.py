"""Append-only, hash-chained audit log.

``record()`` only queues the entry on the session; the chain is extended in the session's
``before_commit`` hook, right before the transaction commits. Appends are serialised by a row lock
on the single ``app_audit_head`` row (``UPDATE ... RETURNING``), which works the same on PostgreSQL
(row lock until commit) and SQLite (write lock), and is held only for the end of the transaction.
Entries of a rolled-back transaction never reach the chain.
"""

from __future__ import annotations

from app_api.platform.audit.service import record, verify_chain

__all__ = ["record", "verify_chain"]
