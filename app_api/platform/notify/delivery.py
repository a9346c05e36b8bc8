"""Delivery of one message: claim it, go down the channels that can reach the resident, and record
each channel's outcome as soon as it is known.

Channels are taken in ``channel_order`` (WeChat, then SMS). On each:

- sent: done;
- refused for good (``ChannelError.permanent``: a rejected template, no grant, a stale openid, a
  template the SMS provider refuses): recorded on the message (``app_notification_dispatch`` and
  the attempt) and the next channel is tried at once, in the same run;
- a passing failure (network, 5xx, busy, rate limited): the message waits ``retry_backoff_s`` and
  the minute's sweep tries the same channel again; after the channel's cap (``channel_max_attempts``,
  else ``max_attempts``) it moves on to the next channel as after a refusal;
- every channel refused or gave up: ``failed``, final (the resident's inbox and the operations view
  show it; the sweep no longer picks it up).

Exactly once per channel: a channel is claimed for a message before it is called, by an INSERT of
its dispatch row that conflicts on (notification, channel) or an UPDATE of that row from ``retry`` or
``skipped`` to ``sending``. A message claimed twice (two sweeps, the sweep racing the delivery job,
a claim that lapsed mid-send) therefore still reaches a channel once; a call whose outcome was never
recorded (the worker died mid-send) is taken as ``unconfirmed`` after ``claim_s`` and not repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import new_id, session_scope, utcnow
from app_api.platform.notify.channels import Channel, ChannelError, channels
from app_api.platform.notify.models import (
    Notification,
    NotificationAttempt,
    NotificationDispatch,
    NotifyPreference,
)
from app_api.platform.notify.preferences import preference_of, quiet_until, subscription_of
from app_api.platform.notify.settings import get_notify_settings
from app_api.platform.notify.templates import TemplateSpec, find_template

log = logging.getLogger(__name__)

# A channel in one of these states is not called again for the message.
DONE = ("sent", "failed", "exhausted", "unconfirmed")
# States a channel can be claimed from (besides having no row yet).
CLAIMABLE = ("retry", "skipped")


@dataclass(frozen=True)
class _Skip:
    """A channel that could not be tried for this resident (recorded, checked again next run)."""

    channel: str
    code: str
    message: str


@dataclass
class _Outcome:
    """What one call on one channel came to."""

    channel: str
    state: str  # sent, retry, failed, exhausted, unconfirmed
    tries: int
    message_id: str | None = None
    code: str | None = None
    error: str | None = None
    refused: bool = False
    needs_subscription: bool = False
    template: str = ""


@dataclass
class _Write:
    """One transaction's changes to a message: a channel's outcome and/or the message's state."""

    outcome: _Outcome | None = None
    skips: list[_Skip] = field(default_factory=list)
    count: bool = False  # this run made its first call: one more attempt
    status: str | None = None  # None: unchanged (the run goes on to the next channel)
    channel: str | None = None
    next_attempt_at: dt.datetime | None = None
    error: str | None = None
    message_id: str | None = None  # the provider's id, when not in ``outcome``
    release: bool = False  # the run is over: free the message's claim


def _backoff(tries: int) -> float:
    seq = get_notify_settings().retry_backoff_s or [60.0]
    return float(seq[min(tries - 1, len(seq) - 1)])


def _cap(channel: str) -> int:
    s = get_notify_settings()
    return max(1, int(s.channel_max_attempts.get(channel, s.max_attempts)))


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


async def _insert_new(session: AsyncSession, values: dict[str, Any]) -> bool:
    """INSERT a dispatch row unless one exists for its (notification, channel); True if inserted."""
    conn = await session.connection()
    insert: Any = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(NotificationDispatch).values(**values).on_conflict_do_nothing()
    res = await conn.execute(stmt)
    return bool(res.rowcount == 1)


async def _claim_channel(notification_id: str, channel: str, now: dt.datetime) -> bool:
    """Take ``channel`` for this message (committed before the call); False if another worker has
    it or it is already done."""
    async with session_scope() as session:
        res = await session.exec(
            sa.update(NotificationDispatch)
            .where(
                col(NotificationDispatch.notification_id) == notification_id,
                col(NotificationDispatch.channel) == channel,
                col(NotificationDispatch.state).in_(CLAIMABLE),
            )
            .values(state="sending", started_at=now, updated_at=now)
        )
        if res.rowcount == 1:
            return True
        return await _insert_new(
            session,
            {
                "id": new_id(),
                "notification_id": notification_id,
                "channel": channel,
                "state": "sending",
                "tries": 0,
                "started_at": now,
                "updated_at": now,
            },
        )


async def _route(
    session: AsyncSession, n: Notification, spec: TemplateSpec, pref: NotifyPreference
) -> tuple[list[tuple[Channel, str]], list[_Skip]]:
    """The channels that may carry this message to this resident, in order, and why the others
    that carry this kind of message cannot."""
    muted = spec.category in (pref.muted_categories or [])
    out: list[tuple[Channel, str]] = []
    skips: list[_Skip] = []
    registry = channels()
    for name in get_notify_settings().channel_order:
        ch = registry.get(name)
        if ch is None or not ch.supports(spec):
            continue
        allowed = {"sms": pref.sms_enabled, "wechat": pref.wechat_enabled}.get(name, True) and not muted
        # Urgent messages always reach SMS: the floor residents cannot switch off.
        if not allowed and not (n.urgent and name == "sms"):
            skips.append(_Skip(name, f"{name}.switched_off", "switched off in the resident's settings"))
            continue
        address = await ch.address(session, n.account_id)
        if not address:
            skips.append(_Skip(name, f"{name}.no_binding", "the resident has no address on this channel"))
            continue
        if ch.needs_subscription:
            sub = await subscription_of(session, n.account_id, name, spec.key)
            if sub is None or sub.remaining <= 0:
                why = "refused" if sub is not None and sub.refused_at is not None else "not subscribed"
                skips.append(_Skip(name, f"{name}.not_subscribed", f"no subscribe grant ({why})"))
                continue
        out.append((ch, address))
    return out, skips


async def _call(ch: Channel, address: str, n: Notification, spec: TemplateSpec, tries: int) -> _Outcome:
    """Call one channel once; classify what happened."""
    tries += 1
    base = _Outcome(
        channel=ch.name,
        state="sent",
        tries=tries,
        needs_subscription=ch.needs_subscription,
        template=spec.key,
    )
    try:
        base.message_id = await ch.deliver(address, n, spec)
        return base
    except ChannelError as e:
        base.code, base.error, base.refused = e.code[:60], e.message[:300], e.refused
        if e.permanent:
            base.state = "failed"
            return base
    except Exception as e:  # a bug or an unexpected SDK error: a passing failure, capped like one
        log.exception("notification %s: channel %s crashed", n.id, ch.name)
        base.code, base.error = "unexpected", f"{type(e).__name__}: {e}"[:300]
    base.state = "exhausted" if tries >= _cap(ch.name) else "retry"
    return base


async def _attempt(notification_id: str, now: dt.datetime) -> str:
    """One delivery run for a claimed notification; returns the resulting status."""
    s = get_notify_settings()
    async with session_scope() as session:
        n = await session.get(Notification, notification_id)
        if n is None:
            return "missing"
        spec = find_template(n.template) or TemplateSpec(key=n.template, text=n.text, category="app")
        pref = await preference_of(session, n.account_id)
        until = None if n.urgent else quiet_until(pref, now)
        rows = await session.exec(
            select(NotificationDispatch).where(NotificationDispatch.notification_id == notification_id)
        )
        states = {d.channel: d for d in rows.all()}
        route, skips = ([], []) if until else await _route(session, n, spec, pref)
        snapshot = n  # the session does not expire attributes on commit: safe to read after it

    if until is not None:
        return await _record(notification_id, _Write(status="deferred", next_attempt_at=until, release=True))

    # A channel already took it (its outcome recorded, the message's not, or another worker's run).
    sent = next((d for d in states.values() if d.state == "sent"), None)
    if sent is not None:
        done = _Write(status="sent", channel=sent.channel, message_id=sent.provider_message_id, release=True)
        return await _record(notification_id, done)
    inflight = next((d for d in states.values() if d.state == "sending"), None)
    if inflight is not None:
        started = inflight.started_at or inflight.updated_at
        if now - started < dt.timedelta(seconds=s.claim_s):
            # Another worker is calling that channel right now: it records the outcome.
            await _record(notification_id, _Write(release=True))
            return "busy"
        lost = _Outcome(
            channel=inflight.channel,
            state="unconfirmed",
            tries=inflight.tries + 1,
            code="lost",
            error="the call's outcome was never recorded (the worker stopped); not repeated",
        )
        return await _record(
            notification_id,
            _Write(
                outcome=lost,
                status="unconfirmed",
                channel=inflight.channel,
                error=f"{inflight.channel}: outcome unknown, not resent",
                release=True,
            ),
        )

    pending_skips, counted = skips, False
    failures = [f"{d.channel}: {d.error_code}" for d in states.values() if d.state in ("failed", "exhausted")]
    for ch, address in route:
        d = states.get(ch.name)
        if d is not None and d.state in DONE:
            continue
        if not await _claim_channel(notification_id, ch.name, now):
            await _record(notification_id, _Write(skips=pending_skips, release=True))
            return "busy"
        outcome = await _call(ch, address, snapshot, spec, d.tries if d is not None else 0)
        write = _Write(outcome=outcome, skips=pending_skips, count=not counted, channel=ch.name)
        pending_skips, counted = [], True
        if outcome.state == "sent":
            write.status, write.release = "sent", True
        elif outcome.state == "retry":
            write.status, write.release = "retrying", True
            write.next_attempt_at = now + dt.timedelta(seconds=_backoff(outcome.tries))
            write.error = f"{ch.name}: {outcome.code}: {outcome.error}"[:300]
        else:  # failed or exhausted: on to the next channel now, the message still claimed
            write.error = f"{ch.name}: {outcome.code}: {outcome.error}"[:300]
            failures.append(f"{ch.name}: {outcome.code}")
        try:
            status = await _record(notification_id, write)
        except Exception as e:
            log.exception(
                "notification %s: outcome on %s (%s) not recorded; claim kept until it lapses",
                notification_id,
                ch.name,
                outcome.state,
            )
            raise _Unrecorded(notification_id) from e
        if write.release:
            return status

    if failures:  # every channel that could carry it refused or gave up: final
        final = _Write(
            skips=pending_skips, status="failed", error=("all channels failed: " + "; ".join(failures))[:300]
        )
    else:  # nothing may reach the resident (switched off, unbound, no grant): the inbox keeps it
        final = _Write(skips=pending_skips, status="in_app", channel="in_app")
    final.release = True
    return await _record(notification_id, final)


class _Unrecorded(Exception):
    """The outcome of a delivery could not be written: the claim is kept until it lapses."""


async def _record(notification_id: str, write: _Write) -> str:
    # SQLite lets one writer at a time: a long request (an agents' batch) can hold the lock past the
    # busy timeout. The message may already be out, so the outcome is retried rather than dropped.
    return await _retrying(notification_id, lambda: _record_once(notification_id, write))


async def _retrying(notification_id: str, fn: Callable[[], Awaitable[str]]) -> str:
    delays = [0.25, 0.5, 1.0, 2.0, 4.0]
    for i, delay in enumerate([*delays, None]):
        try:
            return await fn()
        except sa.exc.OperationalError:
            if delay is None:
                raise
            log.warning(
                "notification %s: recording the outcome failed (try %d), retrying", notification_id, i + 1
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def _note_skip(session: AsyncSession, notification_id: str, skip: _Skip) -> None:
    """Record why a channel was passed over, unless the channel has a real outcome already."""
    now = utcnow()
    res = await session.exec(
        sa.update(NotificationDispatch)
        .where(
            col(NotificationDispatch.notification_id) == notification_id,
            col(NotificationDispatch.channel) == skip.channel,
            col(NotificationDispatch.state) == "skipped",
        )
        .values(error_code=skip.code, error=skip.message, updated_at=now)
    )
    if res.rowcount == 0:
        await _insert_new(
            session,
            {
                "id": new_id(),
                "notification_id": notification_id,
                "channel": skip.channel,
                "state": "skipped",
                "tries": 0,
                "error_code": skip.code,
                "error": skip.message,
                "updated_at": now,
            },
        )


async def _record_once(notification_id: str, write: _Write) -> str:
    async with session_scope() as session:
        n = await session.get(Notification, notification_id)
        if n is None:
            return "missing"
        for skip in write.skips:
            await _note_skip(session, notification_id, skip)
        o = write.outcome
        if o is not None:
            await session.exec(
                sa.update(NotificationDispatch)
                .where(
                    col(NotificationDispatch.notification_id) == notification_id,
                    col(NotificationDispatch.channel) == o.channel,
                )
                .values(
                    state=o.state,
                    tries=o.tries,
                    error_code=o.code,
                    error=o.error,
                    provider_message_id=o.message_id,
                    updated_at=utcnow(),
                )
            )
            if o.state != "unconfirmed":
                session.add(
                    NotificationAttempt(
                        notification_id=notification_id,
                        channel=o.channel,
                        ok=o.state == "sent",
                        error_code=o.code,
                        error=o.error,
                        provider_message_id=o.message_id,
                    )
                )
            if o.needs_subscription and (o.refused or o.state == "sent"):
                # A refusal means WeChat holds no grant (whatever we counted); a message used one.
                sub = await subscription_of(session, n.account_id, o.channel, o.template)
                if sub is not None:
                    sub.remaining = 0 if o.refused else max(0, sub.remaining - 1)
                    sub.updated_at = utcnow()
                    session.add(sub)
        if write.count:
            n.attempts += 1
        if write.channel:
            n.channel = write.channel
        if write.status is not None:
            n.status = write.status
            n.next_attempt_at = write.next_attempt_at
        if write.release:
            n.claimed_until = None
        if write.status == "sent":
            n.sent_at, n.last_error = utcnow(), None
            n.provider_message_id = o.message_id if o is not None else write.message_id
        elif write.error:
            n.last_error = write.error
        session.add(n)
        return n.status


async def deliver_now(notification_id: str) -> str:
    """Claim and try to deliver one notification; "skipped" if it is not due or someone holds it,
    "busy" if another worker is calling one of its channels."""
    now = utcnow()
    if not await _claim(notification_id, now):
        return "skipped"
    try:
        return await _attempt(notification_id, now)
    except _Unrecorded:
        raise  # the message may be out: releasing the claim now could send it twice
    except BaseException:
        # Release the claim so the sweep can try again soon (the attempt may not have been recorded;
        # a channel claimed and not recorded stays claimed, so it is not called twice).
        async with session_scope() as session:
            await session.exec(
                sa.update(Notification)
                .where(col(Notification.id) == notification_id)
                .values(claimed_until=None)
            )
        raise


async def due(limit: int | None = None, now: dt.datetime | None = None) -> list[str]:
    """Messages whose time has come and that nobody holds, the longest overdue first (so a backlog
    of failing messages does not keep newer ones waiting past their retry time)."""
    now = now or utcnow()
    async with session_scope() as session:
        rows = await session.exec(
            select(Notification.id)
            .where(
                col(Notification.status).in_(("pending", "deferred", "retrying")),
                sa.or_(col(Notification.next_attempt_at).is_(None), col(Notification.next_attempt_at) <= now),
                sa.or_(col(Notification.claimed_until).is_(None), col(Notification.claimed_until) < now),
            )
            .order_by(sa.func.coalesce(col(Notification.next_attempt_at), col(Notification.created_at)))
            .limit(limit or get_notify_settings().sweep_batch)
        )
        return list(rows.all())
