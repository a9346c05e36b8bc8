"""Request and response bodies of the notification endpoints."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app_api.platform.notify.preferences import HHMM


class NotificationOut(BaseModel):
    id: str
    template: str
    text: str
    status: str
    status_label: str
    channel: str | None
    urgent: bool
    created_at: dt.datetime
    sent_at: dt.datetime | None
    deferred_until: dt.datetime | None
    read: bool


class NotificationList(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")


class SubscriptionOut(BaseModel):
    channel: str
    template: str
    remaining: int
    refused: bool


class NotificationSettingsOut(BaseModel):
    sms_enabled: bool
    wechat_enabled: bool
    quiet_hours_enabled: bool
    quiet_start: str
    quiet_end: str
    muted_categories: list[str]
    categories: list[str]
    subscriptions: list[SubscriptionOut]
    note: str


class PreferenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sms_enabled: bool | None = None
    wechat_enabled: bool | None = None
    quiet_hours_enabled: bool | None = None
    quiet_start: str | None = Field(default=None, description="HH:MM, China time")
    quiet_end: str | None = Field(default=None, description="HH:MM, China time")
    muted_categories: list[str] | None = Field(default=None, max_length=20)

    @field_validator("quiet_start", "quiet_end")
    @classmethod
    def _hhmm(cls, v: str | None) -> str | None:
        if v is not None and not HHMM.match(v):
            raise ValueError("时间格式应为 HH:MM（例如 22:00）")
        return v


class AttemptOut(BaseModel):
    channel: str
    ok: bool
    error_code: str | None
    at: dt.datetime


class ChannelStateOut(BaseModel):
    """Where one message stands on one channel: sent, retry, failed (refused for good), exhausted
    (gave up after passing failures), unconfirmed, skipped (could not reach the resident), sending."""

    channel: str
    state: str
    tries: int
    error_code: str | None
    error: str | None


class DeliveryOut(BaseModel):
    """One message as operations see it: no text, no data."""

    id: str
    account_id: str
    template: str
    urgent: bool
    status: str
    channel: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    tries: list[AttemptOut]
    channels: list[ChannelStateOut] = Field(default_factory=list)


class DeliveryReport(BaseModel):
    counts: dict[str, int]
    items: list[DeliveryOut]
    next_cursor: str | None = Field(default=None, description="下一页的 cursor；最后一页为 null")
