"""Delivery of one message: claim it, try the channels that can reach the resident in order,
record the outcome (attempts, status, the grant used) in one transaction."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from app_api.platform.notify.channels import Channel, ChannelError, channels
from app_api.platform.notify.models import Notification, NotificationAttempt, NotifyPreference
from app_api.platform.notify.preferences import preference_of, quiet_until, subscription_of
from app_api.platform.notify.settings import get_notify_settings
from app_api.platform.notify.templates import TemplateSpec, find_template

log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What one delivery run decided, to be written back in one transaction."""

    attempts: list[NotificationAttempt] = field(default_factory=list)
    status: str = "retrying"
    channel: str | None = None
    message_id: str | None = None
    error: str | None = None
    next_attempt_at: dt.datetime | None = None
    used_grant: tuple[str, str] | None = None  # (channel, template)
    refused: list[str] = field(default_factory=list)  # channels whose grant turned out to be void
    counted: bool = True  # False: nothing was attempted (deferred)


def _backoff(attempts: int) -> float:
    seq = get_notify_settings().retry_backoff_s or [60.0]
    return float(seq[min(attempts - 1, len(seq) - 1)])


async def _claim(notification_id: str, now: dt.datetime) -> bool:
    s = get_notify_settings()
    async with session_scope() as session:
        res = await session.exec(
            sa.update(Notification)
            .where(
                col(Notification.id) == notification_id,
                col(Notification.status).in_(("pending", "deferred", "retrying")),
                sa.or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
                sa.or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now),
            )
            .values(claimed_until=now + dt.timedelta(seconds=s.claim_s))
        )
        return bool(res.rowcount == 1)


async def _candidates(
    session: AsyncSession, n: Notification, spec: TemplateSpec, pref: NotifyPreference
) -> list[tuple[Channel, str]]:
    muted = spec.category in (pref.muted_categories or [])
    out: list[tuple[Channel, str]] = []
    registry = channels()
    for name in get_notify_settings().channel_order:
        ch = registry.get(name)
        if ch is None or not ch.supports(spec):
            continue
        allowed = {"sms": pref.sms_enabled, "wechat": pref.wechat_enabled}.get(name, True) and not muted
        # Urgent messages always reach SMS: the floor residents cannot switch off.
        if not allowed and not (n.urgent and name == "sms"):
            continue
        if ch.needs_subscription:
            sub = await subscription_of(session, n.account_id, name, spec.key)
            if sub is None or sub.remaining <= 0:
                continue
        address = await ch.address(session, n.account_id)
        if address:
            out.append((ch, address))
    return out


async def _attempt(notification_id: str, now: dt.datetime) -> str:
    """One delivery run for a claimed notification; returns the resulting status."""
    s = get_notify_settings()
    plan = _Plan()
    async with session_scope() as session:
        n = await session.get(Notification, notification_id)
        if n is None:
            return "missing"
        spec = find_template(n.template) or TemplateSpec(key=n.template, text=n.text, category="app")
        pref = await preference_of(session, n.account_id)
        until = None if n.urgent else quiet_until(pref, now)
        candidates = [] if until else await _candidates(session, n, spec, pref)
        attempts_so_far = n.attempts
        snapshot = n  # the session does not expire attributes on commit: safe to read after it
    if until is not None:
        plan.status, plan.next_attempt_at, plan.counted = "deferred", until, False
    elif not candidates:
        plan.status, plan.channel, plan.counted = "in_app", "in_app", False
    else:
        retry, permanent = False, False
        for ch, address in candidates:
            try:
                message_id = await ch.deliver(address, snapshot, spec)
            except ChannelError as e:
                plan.attempts.append(
                    NotificationAttempt(
                        notification_id=notification_id,
                        channel=ch.name,
                        ok=False,
                        error_code=e.code[:60],
                        error=e.message[:300],
                    )
                )
                plan.error, plan.channel = f"{ch.name}: {e}"[:300], ch.name
                if e.refused:
                    if ch.needs_subscription:
                        plan.refused.append(ch.name)
                    continue  # this channel cannot reach them: try the next one now
                if e.retryable:
                    retry = True
                    break
                permanent = True
                continue
            except Exception as e:  # a bug or an unexpected SDK error: retried like an outage
                log.exception("notification %s: channel %s crashed", notification_id, ch.name)
                plan.attempts.append(
                    NotificationAttempt(
                        notification_id=notification_id,
                        channel=ch.name,
                        ok=False,
                        error_code="unexpected",
                        error=f"{type(e).__name__}: {e}"[:300],
                    )
                )
                plan.error, plan.channel = f"{ch.name}: {type(e).__name__}"[:300], ch.name
                retry = True
                break
            plan.attempts.append(
                NotificationAttempt(
                    notification_id=notification_id, channel=ch.name, ok=True, provider_message_id=message_id
                )
            )
            plan.status, plan.channel, plan.message_id, plan.error = "sent", ch.name, message_id, None
            if ch.needs_subscription:
                plan.used_grant = (ch.name, spec.key)
            break
        if plan.status == "sent":
            pass
        elif retry:
            total = attempts_so_far + 1
            if total >= s.max_attempts:
                plan.status = "failed"
            else:
                plan.status = "retrying"
                plan.next_attempt_at = now + dt.timedelta(seconds=_backoff(total))
        elif permanent:
            plan.status = "failed"
        else:  # every channel refused outright (grants void, unbound): the inbox keeps it
            plan.status, plan.channel = "in_app", "in_app"

    try:
        return await _record(notification_id, plan)
    except Exception as e:
        log.exception(
            "notification %s: outcome (%s) not recorded; claim kept until it lapses",
            notification_id,
            plan.status,
        )
        raise _Unrecorded(notification_id) from e


class _Unrecorded(Exception):
    """The outcome of a delivery could not be written: the claim is kept until it lapses."""


async def _record(notification_id: str, plan: _Plan) -> str:
    # SQLite lets one writer at a time: a long request (an agents' batch) can hold the lock past the
    # busy timeout. The message may already be out, so the outcome is retried rather than dropped.
    delays = [0.25, 0.5, 1.0, 2.0, 4.0]
    for i, delay in enumerate([*delays, None]):
        try:
            return await _record_once(notification_id, plan)
        except sa.exc.OperationalError:
            if delay is None:
                raise
            log.warning(
                "notification %s: recording the outcome failed (try %d), retrying", notification_id, i + 1
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def _record_once(notification_id: str, plan: _Plan) -> str:
    async with session_scope() as session:
        n = await session.get(Notification, notification_id)
        if n is None:
            return "missing"
        for a in plan.attempts:
            session.add(a)
        if plan.counted:
            n.attempts += 1
        n.status = plan.status
        if plan.channel:
            n.channel = plan.channel
        n.next_attempt_at = plan.next_attempt_at
        n.claimed_until = None
        if plan.status == "sent":
            n.sent_at, n.last_error, n.provider_message_id = utcnow(), None, plan.message_id
        elif plan.error:
            n.last_error = plan.error
        session.add(n)
        for name in plan.refused:
            sub = await subscription_of(session, n.account_id, name, n.template)
            if sub is not None:
                sub.remaining, sub.updated_at = 0, utcnow()
                session.add(sub)
        if plan.used_grant is not None:
            sub = await subscription_of(session, n.account_id, *plan.used_grant)
            if sub is not None:
                sub.remaining, sub.updated_at = max(0, sub.remaining - 1), utcnow()
                session.add(sub)
    return plan.status


async def deliver_now(notification_id: str) -> str:
    """Claim and try to deliver one notification; "skipped" if it is not due or someone holds it."""
    now = utcnow()
    if not await _claim(notification_id, now):
        return "skipped"
    try:
        return await _attempt(notification_id, now)
    except _Unrecorded:
        raise  # the message may be out: releasing the claim now could send it twice
    except BaseException:
        # Release the claim so the sweep can try again soon (the attempt may not have been recorded).
        async with session_scope() as session:
            await session.exec(
                sa.update(Notification)
                .where(col(Notification.id) == notification_id)
                .values(claimed_until=None)
            )
        raise


async def due(limit: int | None = None, now: dt.datetime | None = None) -> list[str]:
    now = now or utcnow()
    async with session_scope() as session:
        rows = await session.exec(
            select(Notification.id)
            .where(
                col(Notification.status).in_(("pending", "deferred", "retrying")),
                sa.or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
                sa.or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now),
            )
            .order_by(col(Notification.created_at))
            .limit(limit or get_notify_settings().sweep_batch)
        )
        return list(rows.all())
