"""``send()``: store a message in the caller's transaction; it is delivered after commit."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.core.jobs import outbox
from app_api.platform.notify.models import Notification
from app_api.platform.notify.preferences import preference_of, quiet_until
from app_api.platform.notify.templates import get_template, render


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
