from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class NoticesSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_NOTICES_", extra="ignore")

    page_size_max: int = 50


@lru_cache
def get_config() -> NoticesSettings:
    return NoticesSettings()
