"""Settings of the provident-fund column (prefix ``WOJIA_COLUMN_PROVIDENT_FUND_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings, get_settings

DEV_CENTER_SECRET = "dev-fund-center-secret-change-me"
SANDBOX_PATH = "/sandbox/provident_fund"


class ProvidentFundSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_PROVIDENT_FUND_", extra="ignore")

    center_name: str = ""
    center_url: str = ""  # default: the sandbox under the api's public base URL
    app_id: str = "wojia"
    secret: SecretStr = SecretStr(DEV_CENTER_SECRET)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    withdrawal_retry_max: int = 10
    contribution_months_max: int = 60

    @model_validator(mode="after")
    def _check(self) -> Self:
        s = get_settings()
        self.center_name = self.center_name or f"{s.city_name}市住房公积金管理中心"
        self.center_url = self.center_url or s.public_base_url.rstrip("/") + SANDBOX_PATH
        self.refuse_dev_secrets(
            s.environment, {"WOJIA_COLUMN_PROVIDENT_FUND_SECRET": (self.secret, DEV_CENTER_SECRET)}
        )
        return self


@lru_cache
def get_config() -> ProvidentFundSettings:
    return ProvidentFundSettings()
