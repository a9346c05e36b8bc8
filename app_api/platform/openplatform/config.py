"""Settings of the open platform (prefix ``WOJIA_OPENPLATFORM_``)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class OpenPlatformSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_OPENPLATFORM_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # An unpaid cashier order is closed this long after the column opened it, and the column is told
    # (``order.closed``). 30 minutes, the wallets' usual payment window; at least a minute (the sweep
    # runs every minute), at most a week.
    cashier_order_ttl_s: int = Field(default=1800, ge=60, le=7 * 86400)


@lru_cache
def get_openplatform_settings() -> OpenPlatformSettings:
    return OpenPlatformSettings()
