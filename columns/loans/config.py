from __future__ import annotations

from functools import lru_cache

from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class LoansSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_LOANS_", extra="ignore")

    # Applications a resident may have open at once (submitted, accepted, info requested).
    open_applications_max: int = 5
    page_size_max: int = 100


@lru_cache
def get_config() -> LoansSettings:
    return LoansSettings()
