"""Notifications to residents: one service for SMS and WeChat subscription messages.

Packages and columns register a template per event (``register_template``) and call ``send()`` inside
their transaction. The message is stored at once (the resident's in-app inbox) and delivered after
commit through the outbox, by the first channel that can reach the resident:

- WeChat subscription messages (registered by ``miniprogram_bridge.channel``) when the template has a
  WeChat layout, the resident's mini-program openid is bound and they hold a one-time subscribe grant
  for that event (``wx.requestSubscribeMessage``: each "accept" allows one message);
- SMS otherwise (urgent messages always reach SMS, whatever the preferences say).

Per-resident preferences switch channels and categories off and set quiet hours; a non-urgent
message due inside quiet hours is deferred to their end, never dropped. Delivery is claimed
atomically (``claimed_until``), so two workers never send one message twice; a failed attempt is
recorded (``app_notification_attempt``) and retried with backoff by the sweep that runs every
minute, up to ``max_attempts``; a message reaches the resident at most once per claim, and the claim
outlives any single send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import string
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from pydantic_settings import SettingsConfigDict
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.component import Component, Mount
from app_api.core.db import (
    SessionDep,
    UTCDateTime,
    created_at_field,
    datetime_field,
    new_id,
    session_scope,
    utcnow,
)
from app_api.core.errors import NotFound, UpstreamError, ValidationFailed
from app_api.core.jobs import broker, outbox
from app_api.core.settings import WojiaSettings, get_settings
from app_api.platform.access import CurrentAccount, require_roles
from app_api.platform.sms import get_sms

log = logging.getLogger(__name__)
CHINA_TZ = ZoneInfo("Asia/Shanghai")


class NotifySettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_NOTIFY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Seconds to wait before attempt 2, 3, ...; the last figure repeats.
    retry_backoff_s: list[float] = PField(default_factory=lambda: [60.0, 300.0, 900.0, 3600.0])
    max_attempts: int = 5
    # A delivery claimed by a worker is not taken by another for this long (longer than any send).
    claim_s: float = 120
    default_quiet_start: str = "22:00"
    default_quiet_end: str = "07:00"
    # Channels tried first to last; a channel that cannot reach the resident is skipped.
    channel_order: list[str] = PField(default_factory=lambda: ["wechat", "sms"])
    sweep_batch: int = 500


@lru_cache
def get_notify_settings() -> NotifySettings:
    return NotifySettings()


# ---------------------------------------------------------------------------------------------
# Templates


@dataclass(frozen=True)
class TemplateSpec:
    """One event's message: the SMS text and, optionally, a WeChat subscription-message layout.

    ``wechat_fields`` maps the keywords of the WeChat template chosen in the mini-program console
    (``thing1``, ``time2``, ``phrase3`` ...) to ``$name`` templates over ``params``; the template id
    itself is deployment configuration (``WOJIA_MP_WECHAT_TEMPLATE_IDS``).
    """

    key: str
    text: str
    category: str
    wechat_fields: dict[str, str] | None = None
    wechat_page: str | None = None


_templates: dict[str, TemplateSpec] = {}


def register_template(
    key: str,
    text: str,
    *,
    category: str | None = None,
    wechat_fields: dict[str, str] | None = None,
    wechat_page: str | None = None,
) -> None:
    """``text`` uses ``$name`` placeholders (string.Template), filled from ``params``.

    ``category`` (default: the key's prefix, ``gov`` for ``gov.status_changed``) is what residents
    mute in their preferences.
    """
    _templates[key] = TemplateSpec(
        key=key,
        text=text,
        category=category or key.split(".", 1)[0],
        wechat_fields=dict(wechat_fields) if wechat_fields else None,
        wechat_page=wechat_page,
    )


def get_template(key: str) -> TemplateSpec:
    if key not in _templates:
        raise KeyError(f"unknown notification template {key!r}")
    return _templates[key]


def templates() -> dict[str, TemplateSpec]:
    return dict(_templates)


register_template("app.generic", "$text")


def render(template_key: str, params: dict[str, Any]) -> str:
    spec = get_template(template_key)
    city = get_settings().city_name
    return f"【我家{city}】" + string.Template(spec.text).safe_substitute(params)


# ---------------------------------------------------------------------------------------------
# Tables


class Notification(SQLModel, table=True):
    __tablename__ = "app_notification"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    template: str = Field(max_length=80)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    text: str = Field(max_length=500)
    # The channel that delivered it (or will be tried first); "in_app" when no channel may reach them.
    channel: str = Field(default="sms", max_length=20)
    urgent: bool = False
    # pending, deferred (quiet hours), retrying, sent, failed, in_app (inbox only)
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = created_at_field()
    sent_at: dt.datetime | None = datetime_field()
    read_at: dt.datetime | None = datetime_field()
    next_attempt_at: dt.datetime | None = datetime_field(index=True)
    claimed_until: dt.datetime | None = datetime_field()
    provider_message_id: str | None = Field(default=None, max_length=120)


class NotificationAttempt(SQLModel, table=True):
    """One delivery attempt on one channel: the record of what happened to a message."""

    __tablename__ = "app_notification_attempt"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    notification_id: str = Field(foreign_key="app_notification.id", index=True, max_length=32)
    channel: str = Field(max_length=20)
    ok: bool
    error_code: str | None = Field(default=None, max_length=60)
    error: str | None = Field(default=None, max_length=300)
    provider_message_id: str | None = Field(default=None, max_length=120)
    at: dt.datetime = created_at_field()


class NotifyPreference(SQLModel, table=True):
    """A resident's choices; absent row = defaults (both channels, quiet hours 22:00-07:00)."""

    __tablename__ = "app_notify_preference"

    account_id: str = Field(foreign_key="app_account.id", primary_key=True, max_length=32)
    sms_enabled: bool = True
    wechat_enabled: bool = True
    quiet_hours_enabled: bool = True
    quiet_start: str = Field(default="22:00", max_length=5)
    quiet_end: str = Field(default="07:00", max_length=5)
    muted_categories: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    updated_at: dt.datetime = created_at_field()


class NotifySubscription(SQLModel, table=True):
    """Subscription state per resident, channel and event: WeChat's one-time grants are counted."""

    __tablename__ = "app_notify_subscription"
    __table_args__ = (sa.UniqueConstraint("account_id", "channel", "template"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    channel: str = Field(max_length=20)
    template: str = Field(max_length=80)
    remaining: int = 0
    refused_at: dt.datetime | None = datetime_field()
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# ---------------------------------------------------------------------------------------------
# Channels


class ChannelError(Exception):
    """A channel failed to deliver. ``refused``: this resident cannot get this message on this
    channel at all (no grant, unsubscribed, unbound): the next channel is tried at once.
    Otherwise ``retryable`` decides between a later retry and giving up on the channel."""

    def __init__(self, code: str, message: str, *, retryable: bool = True, refused: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable and not refused
        self.refused = refused


class Channel(Protocol):
    name: str
    # True: each message uses up one of the resident's grants for the event (WeChat one-time subscribe).
    needs_subscription: bool

    def supports(self, spec: TemplateSpec) -> bool: ...

    async def address(self, session: AsyncSession, account_id: str) -> str | None:
        """Where to send (phone, openid), or None when the resident is not reachable this way."""
        ...

    async def deliver(self, address: str, notification: Notification, spec: TemplateSpec) -> str:
        """Send one message; return the provider's message id; raise ChannelError on failure."""
        ...


class SmsChannel:
    name = "sms"
    needs_subscription = False

    def supports(self, spec: TemplateSpec) -> bool:
        return True

    async def address(self, session: AsyncSession, account_id: str) -> str | None:
        from app_api.platform.accounts.models import Account

        account = await session.get(Account, account_id)
        return account.phone if account is not None and account.is_active else None

    async def deliver(self, address: str, notification: Notification, spec: TemplateSpec) -> str:
        try:
            return await get_sms().send(
                address,
                notification.text,
                template=notification.template,
                params=[str(v) for v in notification.params.values()],
            )
        except UpstreamError as e:
            raise ChannelError(f"sms.{e.extra.get('upstream_code', 'upstream')}", e.detail) from e
        except (OSError, TimeoutError) as e:
            raise ChannelError("sms.unreachable", str(e) or type(e).__name__) from e


# Other channels register themselves when their component is imported (the mini-program bridge's
# WeChat channel): the wiring imports every component in the api and the worker alike.
_channels: dict[str, Channel] = {"sms": SmsChannel()}


def register_channel(channel: Channel) -> None:
    _channels[channel.name] = channel


def channels() -> dict[str, Channel]:
    return _channels


# ---------------------------------------------------------------------------------------------
# Preferences, quiet hours, subscriptions

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _clock(value: str) -> dt.time:
    m = _HHMM.match(value)
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
    if not pref.quiet_hours_enabled:
        return None
    start, end = _clock(pref.quiet_start), _clock(pref.quiet_end)
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


async def _subscription(
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


# ---------------------------------------------------------------------------------------------
# Sending


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
        res = await session.exec(  # type: ignore[call-overload]
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
            sub = await _subscription(session, n.account_id, name, spec.key)
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
        spec = _templates.get(n.template) or TemplateSpec(key=n.template, text=n.text, category="app")
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
            sub = await _subscription(session, n.account_id, name, n.template)
            if sub is not None:
                sub.remaining, sub.updated_at = 0, utcnow()
                session.add(sub)
        if plan.used_grant is not None:
            sub = await _subscription(session, n.account_id, *plan.used_grant)
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
            await session.exec(  # type: ignore[call-overload]
                sa.update(Notification)
                .where(col(Notification.id) == notification_id)
                .values(claimed_until=None)
            )
        raise


@broker.task(task_name="app.notify_deliver")
async def deliver(notification_id: str, outbox_id: str | None = None) -> str:
    return await deliver_now(notification_id)


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


@broker.task(task_name="app.notify_sweep", schedule=[{"cron": "* * * * *"}])
async def sweep() -> dict[str, int]:
    """Deliver what is due: retries whose backoff passed, messages held for quiet hours, and any
    message whose outbox job was lost. Runs every minute."""
    ids = await due()
    gate = asyncio.Semaphore(8)
    counts: dict[str, int] = {}

    async def one(nid: str) -> None:
        async with gate:
            try:
                status = await deliver_now(nid)
            except Exception:
                log.exception("notification %s: delivery crashed", nid)
                status = "error"
            counts[status] = counts.get(status, 0) + 1

    await asyncio.gather(*(one(i) for i in ids))
    return counts


# ---------------------------------------------------------------------------------------------
# Resident endpoints

router = APIRouter(tags=["notifications"])

STATUS_LABELS = {
    "pending": "发送中",
    "deferred": "免打扰时段，稍后发送",
    "retrying": "发送失败，稍后重试",
    "sent": "已发送",
    "failed": "发送失败",
    "in_app": "仅站内消息",
}
CHANNEL_LABELS = {"sms": "短信", "wechat": "微信订阅消息", "in_app": "站内消息"}


def _n_out(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "template": n.template,
        "text": n.text,
        "status": n.status,
        "status_label": STATUS_LABELS.get(n.status, n.status),
        "channel": n.channel if n.status in ("sent", "in_app") else None,
        "urgent": n.urgent,
        "created_at": n.created_at,
        "sent_at": n.sent_at,
        "deferred_until": n.next_attempt_at if n.status == "deferred" else None,
        "read": n.read_at is not None,
    }


@router.get("/me/notifications")
async def my_notifications(principal: CurrentAccount, session: SessionDep, limit: int = 50) -> dict[str, Any]:
    """Messages sent to this resident, newest first."""
    rows = (
        await session.exec(
            select(Notification)
            .where(Notification.account_id == principal.id)
            .order_by(col(Notification.created_at).desc())
            .limit(min(max(limit, 1), 200))
        )
    ).all()
    return {"items": [_n_out(n) for n in rows]}


@router.post("/me/notifications/{notification_id}/read")
async def mark_read(notification_id: str, principal: CurrentAccount, session: SessionDep) -> dict[str, Any]:
    """Mark one message as read."""
    n = await session.get(Notification, notification_id)
    if n is None or n.account_id != principal.id:
        raise NotFound("未找到该消息")
    if n.read_at is None:
        n.read_at = utcnow()
        session.add(n)
        await session.flush()
    return _n_out(n)


class PreferenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sms_enabled: bool | None = None
    wechat_enabled: bool | None = None
    quiet_hours_enabled: bool | None = None
    quiet_start: str | None = PField(default=None, description="HH:MM, China time")
    quiet_end: str | None = PField(default=None, description="HH:MM, China time")
    muted_categories: list[str] | None = PField(default=None, max_length=20)

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not _HHMM.match(v):
            raise ValueError("时间格式应为 HH:MM（例如 22:00）")
        return v


async def _settings_out(session: AsyncSession, account_id: str) -> dict[str, Any]:
    pref = await preference_of(session, account_id)
    subs = (
        await session.exec(select(NotifySubscription).where(NotifySubscription.account_id == account_id))
    ).all()
    cats = sorted({t.category for t in _templates.values()})
    return {
        "sms_enabled": pref.sms_enabled,
        "wechat_enabled": pref.wechat_enabled,
        "quiet_hours_enabled": pref.quiet_hours_enabled,
        "quiet_start": pref.quiet_start,
        "quiet_end": pref.quiet_end,
        "muted_categories": list(pref.muted_categories or []),
        "categories": cats,
        "subscriptions": [
            {
                "channel": s.channel,
                "template": s.template,
                "remaining": s.remaining,
                "refused": s.refused_at is not None,
            }
            for s in subs
        ],
        "note": "紧急通知不受免打扰时段和渠道设置限制，始终以短信送达。",
    }


@router.get("/me/notification-settings")
async def my_notification_settings(principal: CurrentAccount, session: SessionDep) -> dict[str, Any]:
    """Channels, quiet hours, muted categories and WeChat subscription state."""
    return await _settings_out(session, principal.id)


@router.patch("/me/notification-settings")
async def update_notification_settings(
    body: PreferenceUpdate, principal: CurrentAccount, session: SessionDep
) -> dict[str, Any]:
    """Change channels, quiet hours or muted categories (urgent messages still come by SMS)."""
    known = {t.category for t in _templates.values()}
    if body.muted_categories is not None:
        unknown = sorted(set(body.muted_categories) - known)
        if unknown:
            raise ValidationFailed("存在未知的消息类别", unknown=unknown, allowed=sorted(known))
    pref = await session.get(NotifyPreference, principal.id) or await preference_of(session, principal.id)
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(pref, name, value)
    pref.updated_at = utcnow()
    session.add(pref)
    await session.flush()
    return await _settings_out(session, principal.id)


@router.get("/admin/notifications", dependencies=[Depends(require_roles("admin"))])
async def admin_notifications(
    session: SessionDep, status: str | None = None, template: str | None = None, limit: int = 100
) -> dict[str, Any]:
    """Delivery status for operations: attempts per message, without the message text or its data."""
    q = select(Notification).order_by(col(Notification.created_at).desc()).limit(min(max(limit, 1), 500))
    if status:
        q = q.where(Notification.status == status)
    if template:
        q = q.where(Notification.template == template)
    rows = list((await session.exec(q)).all())
    ids = [n.id for n in rows]
    tries: dict[str, list[NotificationAttempt]] = {}
    if ids:
        for a in (
            await session.exec(
                select(NotificationAttempt)
                .where(col(NotificationAttempt.notification_id).in_(ids))
                .order_by(col(NotificationAttempt.at))
            )
        ).all():
            tries.setdefault(a.notification_id, []).append(a)
    grouped = await session.exec(  # type: ignore[call-overload]
        sa.select(col(Notification.status), sa.func.count()).group_by(col(Notification.status))
    )
    counts: dict[str, int] = {str(k): int(v) for k, v in grouped.all()}
    return {
        "counts": counts,
        "items": [
            {
                "id": n.id,
                "account_id": n.account_id,
                "template": n.template,
                "urgent": n.urgent,
                "status": n.status,
                "channel": n.channel,
                "attempts": n.attempts,
                "last_error": n.last_error,
                "created_at": n.created_at,
                "sent_at": n.sent_at,
                "next_attempt_at": n.next_attempt_at,
                "tries": [
                    {"channel": a.channel, "ok": a.ok, "error_code": a.error_code, "at": a.at}
                    for a in tries.get(n.id, [])
                ],
            }
            for n in rows
        ],
    }


component = Component(
    name="app_api.platform.notify",
    routers=(Mount(router),),
    models=(sys.modules[__name__],),
    tasks=(sys.modules[__name__],),
)
