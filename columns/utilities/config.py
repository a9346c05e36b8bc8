"""Settings of the utilities column (prefix ``WOJIA_COLUMN_UTILITIES_``).

Billers are configuration: each names the adapter that speaks its protocol (``http_json`` is built
in; others are installed under the entry-point group ``wojia.utilities.biller_adapters``), its kind
(water, power, gas, or any new kind such as heating) and its endpoint and credentials. Adding a
biller, or a kind of biller, does not touch the column's code.

``WOJIA_COLUMN_UTILITIES_BILLERS='[{"code": "bz_water", "kind": "water", ...}]'``
"""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings, check_base_url, get_settings

DEV_BILLER_SECRET = "dev-biller-secret-change-me"
SANDBOX_PATH = "/sandbox/utilities"

KIND_NAMES = {"water": "水费", "power": "电费", "gas": "燃气费", "heating": "暖气费"}


def kind_name(kind: str) -> str:
    """What residents call a kind of bill ("水费"); a kind without a name shows as configured."""
    return KIND_NAMES.get(kind, kind)


class BillerConfig(BaseModel):
    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{1,19}$")
    name: str = Field(min_length=2, max_length=40)
    adapter: str = "http_json"
    base_url: str
    app_id: str = "wojia"
    secret: SecretStr = SecretStr(DEV_BILLER_SECRET)
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    max_connections: int = Field(default=64, ge=1, le=1000)
    # Account numbers as the biller prints them on paper bills (checked before any call).
    account_no_pattern: str = r"^[0-9A-Za-z-]{6,32}$"

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_base_url("biller base_url", value, empty_ok=False)


def _dev_billers() -> list[BillerConfig]:
    base = get_settings().public_base_url.rstrip("/") + SANDBOX_PATH
    city = get_settings().city_name
    return [
        BillerConfig(code="water", kind="water", name=f"{city}市自来水公司", base_url=f"{base}/water"),
        BillerConfig(code="power", kind="power", name=f"国网{city}供电公司", base_url=f"{base}/power"),
        BillerConfig(code="gas", kind="gas", name=f"{city}港华燃气", base_url=f"{base}/gas"),
    ]


class UtilitiesSettings(WojiaSettings):
    model_config = SettingsConfigDict(env_prefix="WOJIA_COLUMN_UTILITIES_", extra="ignore")

    billers: list[BillerConfig] = Field(default_factory=list)
    max_bound_accounts: int = 20
    max_bills_per_payment: int = 20
    # Failed binding attempts (unknown account or wrong name) per resident per day: stops guessing
    # holder names account by account.
    bind_failures_per_day: int = 10
    # Biller notification: first try right after the payment, then backoff base * 2^(n-1) up to max.
    notice_backoff_base_s: int = 30
    notice_backoff_max_s: int = 3600
    notice_max_attempts: int = 12
    # A delivery holds its notice this long (longer than any biller's call, checked below); a
    # deliverer killed mid-call frees its notice after this, and the notice's job takes it over.
    notice_lease_s: int = Field(default=30, ge=10, le=600)
    reminder_days_before: int = 3
    payment_ttl_s: int = 15 * 60

    @model_validator(mode="after")
    def _check(self) -> Self:
        env = get_settings().environment
        if not self.billers:
            if env not in {"development", "test"}:
                raise ValueError(
                    f"WOJIA_COLUMN_UTILITIES_BILLERS must be set when environment={env} "
                    "(empty means the development sandboxes)"
                )
            self.billers = _dev_billers()
        for b in self.billers:
            self.refuse_dev_secrets(env, {f"biller {b.code} secret": (b.secret, DEV_BILLER_SECRET)})
        codes = [b.code for b in self.billers]
        if len(set(codes)) != len(codes):
            raise ValueError("biller codes must be unique")
        slowest = max(b.timeout_s for b in self.billers)
        if self.notice_lease_s < slowest + 5:
            raise ValueError(
                f"WOJIA_COLUMN_UTILITIES_NOTICE_LEASE_S ({self.notice_lease_s}) must exceed the slowest "
                f"biller's timeout ({slowest} s) by at least 5 s"
            )
        return self

    def biller(self, code: str) -> BillerConfig | None:
        return next((b for b in self.billers if b.code == code), None)


@lru_cache
def get_config() -> UtilitiesSettings:
    return UtilitiesSettings()
