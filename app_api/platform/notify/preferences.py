"""Residents' preferences, quiet hours and subscription grants."""

from __future__ import annotations

import datetime as dt
import re

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.db import utcnow
from app_api.platform.notify.models import NotifyPreference, NotifySubscription
from app_api.platform.notify.settings import get_notify_settings

HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def _clock(value: str) -> dt.time:
    m = HHMM.match(value)
    if not m:
        raise ValueError(f"not a HH:MM time: {value!r}")
    return dt.time(int(m.group(1)), int(m.group(2)))


async def preference_of(session: AsyncSession, account_id: str) -> NotifyPreference:
    pref = await session.get(NotifyPreference, account_id)
    if pref is None:
        s = get_notify_settings()
        pref = NotifyPreference(
            account_id=account_id, quiet_start=s.default_quiet_start, quiet_end=s.default_quiet_end
        )
    return pref


def quiet_until(pref: NotifyPreference, now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet period ``now`` falls in (local time, China), or None outside it."""
    return quiet_end(pref.quiet_hours_enabled, pref.quiet_start, pref.quiet_end, now)


def quiet_end(enabled: bool, begins: str, ends: str, now: dt.datetime) -> dt.datetime | None:
    """``quiet_until`` on the preference's three fields (read as a row, without an ORM object)."""
    if not enabled:
        return None
    start, end = _clock(begins), _clock(ends)
    if start == end:
        return None
    local = now.astimezone(CHINA_TZ)
    t = local.time()
    if start < end:
        inside = start <= t < end
        end_day = local.date()
    else:  # across midnight, e.g. 22:00-07:00
        inside = t >= start or t < end
        end_day = local.date() + dt.timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return dt.datetime.combine(end_day, end, tzinfo=CHINA_TZ).astimezone(dt.UTC)


async def record_subscription(
    session: AsyncSession, *, account_id: str, channel: str, template: str, accepted: bool
) -> NotifySubscription:
    """A resident's answer to a subscribe prompt: each acceptance allows one more message."""
    sub = (
        await session.exec(
            select(NotifySubscription).where(
                NotifySubscription.account_id == account_id,
                NotifySubscription.channel == channel,
                NotifySubscription.template == template,
            )
        )
    ).first()
    if sub is None:
        sub = NotifySubscription(account_id=account_id, channel=channel, template=template)
    if accepted:
        sub.remaining += 1
        sub.refused_at = None
    else:
        sub.remaining = 0
        sub.refused_at = utcnow()
    sub.updated_at = utcnow()
    session.add(sub)
    await session.flush()
    return sub


async def subscription_of(
    session: AsyncSession, account_id: str, channel: str, template_key: str
) -> NotifySubscription | None:
    return (
        await session.exec(
            select(NotifySubscription).where(
                NotifySubscription.account_id == account_id,
                NotifySubscription.channel == channel,
                NotifySubscription.template == template_key,
            )
        )
    ).first()
