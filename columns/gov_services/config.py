"""Settings of the government services column (prefix ``WOJIA_COLUMN_GOV_SERVICES_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import VAR_DIR, WojiaSettings, get_settings

DEV_POSTAL_SECRET = "dev-postal-secret-change-me"
DEV_S3_SECRET = "dev-s3-secret-change-me"


class GovServicesSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_GOV_SERVICES_", extra="ignore")

    # Uploaded materials: checked by content, encrypted at rest.
    upload_max_bytes: int = 10 * 1024 * 1024
    storage: Literal["local", "s3"] = "local"
    upload_dir: Path = VAR_DIR / "gov_services" / "uploads"
    # S3-compatible object storage (path-style URLs, SigV4). The development default is the column's
    # own S3 sandbox, which the api mounts in development at /sandbox/gov_services/s3.
    s3_endpoint: str = "http://127.0.0.1:8000/sandbox/gov_services/s3"
    s3_bucket: str = "wojia-materials"
    s3_region: str = "us-east-1"
    s3_prefix: str = "gov_services/"
    s3_access_key: str = "wojia-dev"
    s3_secret_key: SecretStr = SecretStr(DEV_S3_SECRET)
    # The postal service (EMS-style waybill API). The development default is the column's own
    # protocol sandbox, which the api mounts in development at this path.
    postal_url: str = "http://127.0.0.1:8000/sandbox/gov_services/postal"
    postal_app_id: str = "wojia"
    postal_secret: SecretStr = SecretStr(DEV_POSTAL_SECRET)
    # Sender address printed on waybills of results posted home.
    postal_sender: str = "亳州市政务服务中心"
    # How often supervision looks at open applications (cron).
    supervise_cron: str = "*/10 * * * *"

    @model_validator(mode="after")
    def _secrets(self) -> GovServicesSettings:
        secrets: dict[str, tuple[SecretStr | None, str]] = {
            "postal_secret": (self.postal_secret, DEV_POSTAL_SECRET)
        }
        if self.storage == "s3":
            secrets["s3_secret_key"] = (self.s3_secret_key, DEV_S3_SECRET)
        self.refuse_dev_secrets(get_settings().environment, secrets)
        return self


@lru_cache
def get_config() -> GovServicesSettings:
    return GovServicesSettings()
