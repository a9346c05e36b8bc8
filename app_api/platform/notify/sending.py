"""``send()``: store a message in the caller's transaction; it is delivered after commit.
``post()``: the same row with Core statements, for hot paths that need only the message's id."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.util import identity_key
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import write_batch
from app_api.core.db import new_id, utcnow
from app_api.core.jobs import outbox
from app_api.platform.notify.models import Notification, NotifyPreference
from app_api.platform.notify.preferences import preference_of, quiet_end, quiet_until
from app_api.platform.notify.settings import get_notify_settings
from app_api.platform.notify.templates import get_template, render

_TABLE: sa.Table = Notification.__table__  # type: ignore[attr-defined]
_PREFS: sa.Table = NotifyPreference.__table__  # type: ignore[attr-defined]
# Built once: their compiled form is cached by the engine (no per-call statement construction).
_INSERT = sa.insert(_TABLE)
_QUIET = sa.select(_PREFS.c.quiet_hours_enabled, _PREFS.c.quiet_start, _PREFS.c.quiet_end).where(
    _PREFS.c.account_id == sa.bindparam("account_id")
)


async def send(
    session: AsyncSession,
    *,
    account_id: str,
    template: str,
    params: dict[str, Any] | None = None,
    urgent: bool = False,
) -> Notification:
    """Store a message for the resident and deliver it after the caller's transaction commits.

    Non-urgent messages inside the resident's quiet hours are deferred to their end.
    """
    params = params or {}
    spec = get_template(template)
    n = Notification(
        account_id=account_id, template=spec.key, params=params, text=render(spec.key, params), urgent=urgent
    )
    if not urgent:
        pref = await preference_of(session, account_id)
        until = quiet_until(pref, utcnow())
        if until is not None:
            n.status, n.next_attempt_at = "deferred", until
    session.add(n)
    await session.flush()
    if n.status == "pending":
        await outbox.enqueue(session, "app.notify_deliver", notification_id=n.id)
    return n


async def post(
    session: AsyncSession,
    *,
    account_id: str,
    template: str,
    params: dict[str, Any] | None = None,
    urgent: bool = False,
) -> str:
    """``send()`` without ORM objects: the same message row (and its delivery job when it is not
    deferred), written by one cached Core INSERT in the caller's transaction; the quiet hours read
    as one row. Nothing else is flushed. Returns the message's id."""
    params = params or {}
    spec = get_template(template)
    now = utcnow()
    status, next_attempt_at = "pending", None
    if not urgent:
        until = quiet_end(*await _quiet_hours(session, account_id), now)
        if until is not None:
            status, next_attempt_at = "deferred", until
    row = {
        "id": new_id(),
        "account_id": account_id,
        "template": spec.key,
        "params": params,
        "text": render(spec.key, params),
        "channel": "sms",
        "urgent": urgent,
        "status": status,
        "attempts": 0,
        "last_error": None,
        "created_at": now,
        "sent_at": None,
        "read_at": None,
        "next_attempt_at": next_attempt_at,
        "claimed_until": None,
        "provider_message_id": None,
    }
    if not write_batch.queue(session, _TABLE, [row]):
        conn = await session.connection()
        await conn.execute(_INSERT, row)
    if status == "pending":
        await outbox.enqueue(session, "app.notify_deliver", notification_id=row["id"])
    return str(row["id"])


def preference_read(session: AsyncSession, account_id: str, found: NotifyPreference | None) -> None:
    """The caller read the resident's preference row with a statement of its own (``found``, or
    ``None``: the resident has none): ``post`` in this transaction uses it instead of reading it
    again."""
    session.sync_session.info.setdefault(_READ, []).append((account_id, found))


# Preferences read by callers in this transaction (a list on ``session.info``: a savepoint that
# rolls back forgets what was read inside it; the transaction's end forgets all). It also keeps
# the rows referenced: the session's identity map alone would let them go.
_READ = "notify_preference_read"


@event.listens_for(Session, "after_commit")
def _forget_commit(session: Session) -> None:
    session.info.pop(_READ, None)


@event.listens_for(Session, "after_soft_rollback")
def _forget_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_READ, None)


async def _quiet_hours(session: AsyncSession, account_id: str) -> tuple[bool, str, str]:
    """The resident's quiet hours: the preference this session holds (perhaps changed and not yet
    flushed), else its row, else the defaults (as ``preference_of``)."""
    held = session.sync_session.identity_map.get(identity_key(NotifyPreference, account_id))
    if isinstance(held, NotifyPreference):
        return held.quiet_hours_enabled, held.quiet_start, held.quiet_end
    if any(a == account_id for a, _ in session.sync_session.info.get(_READ, ())):
        # Read by the caller and absent (a row read would be in the identity map, above).
        s = get_notify_settings()
        return True, s.default_quiet_start, s.default_quiet_end
    conn = await session.connection()
    row = (await conn.execute(_QUIET, {"account_id": account_id})).first()
    if row is not None:
        return bool(row[0]), str(row[1]), str(row[2])
    s = get_notify_settings()
    return True, s.default_quiet_start, s.default_quiet_end
