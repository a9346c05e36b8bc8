"""Settings of the government services column (prefix ``WOJIA_COLUMN_GOV_SERVICES_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import (
    VAR_DIR,
    WojiaSettings,
    adapter_url,
    check_base_url,
    get_settings,
    refuse_empty_url,
)

DEV_POSTAL_SECRET = "dev-postal-secret-change-me"
DEV_S3_SECRET = "dev-s3-secret-change-me"
# Where the api mounts the column's sandboxes in development (``column.dev_sandbox``).
SANDBOX_PATH = "/sandbox/gov_services"


class GovServicesSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_GOV_SERVICES_", extra="ignore")

    # Uploaded materials: checked by content, encrypted at rest.
    upload_max_bytes: int = 10 * 1024 * 1024
    storage: Literal["local", "s3"] = "local"
    upload_dir: Path = VAR_DIR / "gov_services" / "uploads"
    # S3-compatible object storage (path-style URLs, SigV4). Empty: the column's own S3 sandbox,
    # which the api mounts in development at <public base URL>/sandbox/gov_services/s3
    # (``s3_url``); required outside development when storage is "s3".
    s3_endpoint: str = ""
    s3_bucket: str = "wojia-materials"
    s3_region: str = "us-east-1"
    s3_prefix: str = "gov_services/"
    s3_access_key: str = "wojia-dev"
    s3_secret_key: SecretStr = SecretStr(DEV_S3_SECRET)
    # The postal service (the project's proposed waybill protocol, docs/adapters/postal.yaml).
    # Empty: the column's own protocol sandbox, which the api mounts in development at
    # <public base URL>/sandbox/gov_services/postal (``postal_endpoint``); required outside
    # development.
    postal_url: str = ""
    postal_app_id: str = "wojia"
    postal_secret: SecretStr = SecretStr(DEV_POSTAL_SECRET)
    # Sender address printed on waybills of results posted home.
    postal_sender: str = "亳州市政务服务中心"
    # How often supervision looks at open applications (cron).
    supervise_cron: str = "*/10 * * * *"

    # Results approved for posting whose waybill is still missing (the carrier was down, the job
    # failed) are posted again by this sweep (cron), once they are older than the grace below.
    post_pending_cron: str = "*/5 * * * *"
    post_pending_grace_s: int = 120

    # Instant approval (秒批): when set, this share (percent) of instant approvals of every item is
    # sampled for a reviewer's after-the-fact review instead of each item's own share (0 or 100
    # makes sampling certain, e.g. for a drill). A reviewer may revoke an instant approval within
    # ``instant_revoke_hours`` of the decision.
    instant_sample_percent: int | None = Field(default=None, ge=0, le=100)
    instant_revoke_hours: int = Field(default=72, ge=1, le=24 * 90)

    # Fees (收费): an application waits ``fee_payment_ttl_s`` in 待缴费 for its fee; the sweep
    # (cron) cancels those past their time and frees their client key.
    fee_payment_ttl_s: int = Field(default=30 * 60, ge=60, le=7 * 24 * 3600)
    fee_expiry_cron: str = "* * * * *"

    @field_validator("s3_endpoint", "postal_url")
    @classmethod
    def _urls(cls, value: str, info: ValidationInfo) -> str:
        return check_base_url(f"WOJIA_COLUMN_GOV_SERVICES_{str(info.field_name).upper()}", value)

    @model_validator(mode="after")
    def _secrets(self) -> GovServicesSettings:
        environment = get_settings().environment
        secrets: dict[str, tuple[SecretStr | None, str]] = {
            "postal_secret": (self.postal_secret, DEV_POSTAL_SECRET)
        }
        refuse_empty_url(environment, "WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL", self.postal_url)
        if self.storage == "s3":
            secrets["s3_secret_key"] = (self.s3_secret_key, DEV_S3_SECRET)
            refuse_empty_url(environment, "WOJIA_COLUMN_GOV_SERVICES_S3_ENDPOINT", self.s3_endpoint)
        self.refuse_dev_secrets(environment, secrets)
        return self

    @property
    def postal_endpoint(self) -> str:
        return adapter_url("WOJIA_COLUMN_GOV_SERVICES_POSTAL_URL", self.postal_url, SANDBOX_PATH + "/postal")

    @property
    def s3_url(self) -> str:
        return adapter_url("WOJIA_COLUMN_GOV_SERVICES_S3_ENDPOINT", self.s3_endpoint, SANDBOX_PATH + "/s3")


@lru_cache
def get_config() -> GovServicesSettings:
    return GovServicesSettings()
