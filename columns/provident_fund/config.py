"""Settings of the provident-fund column (prefix ``WOJIA_COLUMN_PROVIDENT_FUND_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import (
    WojiaSettings,
    adapter_url,
    check_base_url,
    get_settings,
    refuse_empty_url,
)

DEV_CENTER_SECRET = "dev-fund-center-secret-change-me"
SANDBOX_PATH = "/sandbox/provident_fund"


class ProvidentFundSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_PROVIDENT_FUND_", extra="ignore")

    center_name: str = ""
    # Empty: the sandbox under the api's public base URL (``center_endpoint``, resolved when
    # called); required outside development.
    center_url: str = ""
    app_id: str = "wojia"
    secret: SecretStr = SecretStr(DEV_CENTER_SECRET)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    withdrawal_retry_max: int = 10
    contribution_months_max: int = 60

    @field_validator("center_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_base_url("WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL", value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        s = get_settings()
        self.center_name = self.center_name or f"{s.city_name}市住房公积金管理中心"
        refuse_empty_url(s.environment, "WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL", self.center_url)
        self.refuse_dev_secrets(
            s.environment, {"WOJIA_COLUMN_PROVIDENT_FUND_SECRET": (self.secret, DEV_CENTER_SECRET)}
        )
        return self

    @property
    def center_endpoint(self) -> str:
        return adapter_url("WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL", self.center_url, SANDBOX_PATH)


@lru_cache
def get_config() -> ProvidentFundSettings:
    return ProvidentFundSettings()
