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
