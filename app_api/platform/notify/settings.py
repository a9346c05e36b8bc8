"""Delivery settings (``WOJIA_NOTIFY_*``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class NotifySettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_NOTIFY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Seconds to wait before attempt 2, 3, ... on a channel; the last figure repeats.
    retry_backoff_s: list[float] = Field(default_factory=lambda: [60.0, 300.0, 900.0, 3600.0])
    # Calls on one channel that fail for a passing reason (network, busy, rate limit) before the
    # message moves on to the next channel (on the last channel: before it is given up as failed).
    max_attempts: int = Field(default=5, ge=1)
    # Per-channel caps overriding ``max_attempts``: WeChat gives way to SMS after about 6 minutes
    # (now, +1 min, +5 min) rather than holding a message back for an hour.
    channel_max_attempts: dict[str, int] = Field(default_factory=lambda: {"wechat": 3})
    # A delivery claimed by a worker is not taken by another for this long (longer than any send);
    # a channel call still unrecorded after this long is taken as lost (``unconfirmed``, never repeated).
    claim_s: float = 120
    default_quiet_start: str = "22:00"
    default_quiet_end: str = "07:00"
    # Channels tried first to last; a channel that cannot reach the resident is skipped.
    channel_order: list[str] = Field(default_factory=lambda: ["wechat", "sms"])
    sweep_batch: int = 500
    # Messages one sweep delivers at once, and how long it keeps taking new ones (under the minute
    # between sweeps, less the channels' timeouts).
    sweep_concurrency: int = Field(default=8, ge=1, le=100)
    sweep_budget_s: float = Field(default=40.0, ge=0)


@lru_cache
def get_notify_settings() -> NotifySettings:
    return NotifySettings()
