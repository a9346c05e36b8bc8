"""Settings of the government services column (prefix ``WOJIA_COLUMN_GOV_SERVICES_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.settings import VAR_DIR, WojiaSettings, get_settings

DEV_POSTAL_SECRET = "dev-postal-secret-change-me"


class GovServicesSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_GOV_SERVICES_", extra="ignore")

    # Uploaded materials: checked by content, encrypted at rest.
    upload_max_bytes: int = 10 * 1024 * 1024
    storage: Literal["local"] = "local"
    upload_dir: Path = VAR_DIR / "gov_services" / "uploads"
    # The postal service (EMS-style waybill API). The development default is the column's own
    # protocol sandbox, served by the api at this path.
    postal_url: str = "http://127.0.0.1:8000/api/v1/columns/gov_services/sandbox/postal"
    postal_app_id: str = "wojia"
    postal_secret: SecretStr = SecretStr(DEV_POSTAL_SECRET)
    # Sender address printed on waybills of results posted home.
    postal_sender: str = "亳州市政务服务中心"
    # How often supervision looks at open applications (cron).
    supervise_cron: str = "*/10 * * * *"

    @model_validator(mode="after")
    def _secrets(self) -> GovServicesSettings:
        self.refuse_dev_secrets(
            get_settings().environment, {"postal_secret": (self.postal_secret, DEV_POSTAL_SECRET)}
        )
        return self


@lru_cache
def get_config() -> GovServicesSettings:
    return GovServicesSettings()
