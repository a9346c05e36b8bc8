"""The notification tables: messages, delivery attempts, preferences, subscription grants."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.db import UTCDateTime, created_at_field, datetime_field, new_id, utcnow


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
    # pending, deferred (quiet hours), retrying, sent, failed (every channel refused or gave up),
    # unconfirmed (a send whose outcome was lost; not repeated), in_app (no channel may reach them)
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


class NotificationDispatch(SQLModel, table=True):
    """One message on one channel: at most one row per (message, channel), so a channel is claimed
    before it is called and a message goes out on a channel at most once.

    ``state``: ``sending`` (claimed, the call is in flight), ``sent``, ``retry`` (a transient failure;
    tried again after the backoff), ``failed`` (refused for good: the next channel is tried),
    ``exhausted`` (transient failures up to the channel's cap: the next channel is tried),
    ``unconfirmed`` (a send whose outcome was never recorded: never repeated), ``skipped`` (the
    channel could not reach the resident: no binding, no grant, switched off; checked again on the
    next run).
    """

    __tablename__ = "app_notification_dispatch"
    __table_args__ = (sa.UniqueConstraint("notification_id", "channel"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    # Looked up through the unique (notification_id, channel) index.
    notification_id: str = Field(foreign_key="app_notification.id", max_length=32)
    channel: str = Field(max_length=20)
    state: str = Field(max_length=20)
    # Calls made on this channel (a skip is not a call).
    tries: int = 0
    error_code: str | None = Field(default=None, max_length=60)
    error: str | None = Field(default=None, max_length=300)
    provider_message_id: str | None = Field(default=None, max_length=120)
    started_at: dt.datetime | None = datetime_field()
    updated_at: dt.datetime = created_at_field()


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
