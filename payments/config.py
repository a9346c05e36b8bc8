"""Payments settings (prefix ``WOJIA_PAYMENTS_``; nested provider blocks with ``__``).

``mode = "sandbox"`` (the embedded default and the tests) runs the three protocol sandboxes in the
api process, with keys made once per installation (``sandbox_keys_file``, shared by every process),
and points the real SDKs at them under ``sandbox_url``. ``mode = "live"``
builds each configured provider from its block, e.g.::

    WOJIA_PAYMENTS_MODE=live
    WOJIA_PAYMENTS_WECHAT_V2__APPID=wx...
    WOJIA_PAYMENTS_WECHAT_V2__MCH_ID=19...
    WOJIA_PAYMENTS_WECHAT_V2__API_KEY=...
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import VAR_DIR, WojiaSettings, adapter_url, check_base_url, get_settings

SANDBOX_PREFIX = "/sandbox/payments"


class WeChatV2Block(BaseModel):
    appid: str
    mch_id: str
    api_key: SecretStr
    sign_type: Literal["MD5", "HMAC-SHA256"] = "HMAC-SHA256"
    base_url: str = "https://api.mch.weixin.qq.com/"
    mch_cert_path: str | None = None
    mch_key_path: str | None = None


class WeChatV3Block(BaseModel):
    appid: str
    mchid: str
    private_key: SecretStr
    cert_serial_no: str
    apiv3_key: SecretStr
    public_key: str
    public_key_id: str
    base_url: str = "https://api.mch.weixin.qq.com"


class AlipayBlock(BaseModel):
    app_id: str
    app_private_key: SecretStr  # PKCS#1
    alipay_public_key: str
    seller_id: str
    server_url: str = "https://openapi.alipay.com/gateway.do"


class PaymentsSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_PAYMENTS_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    mode: Literal["sandbox", "live"] = "sandbox"
    # Base URL the providers call back (notify URLs); defaults to the platform's public_base_url.
    notify_base_url: str | None = None
    # Sandbox mode: where the three sandboxes are reached (``<sandbox_url>/wechat_v3`` etc., bill
    # download URLs included). Empty: ``<public base URL>/sandbox/payments``, served by the api.
    sandbox_url: str = ""
    # Sandbox mode: the merchants' and sandboxes' keys, made by the first process that needs them
    # and read by every other (api workers, the job worker), so they all sign alike.
    sandbox_keys_file: Path = VAR_DIR / "sandbox" / "payments_keys.json"
    order_ttl_s: int = 30 * 60  # an unpaid order expires (and is closed at the provider) after this
    pending_query_after_s: int = 15 * 60  # pending orders older than this are queried by the sweep
    notification_max_skew_s: int = 300
    # The sweeps of hand-offs (``payments.sweep_handoffs``, ``payments.sweep_refunds``, every minute):
    # the last line of defence when a job was lost (Redis wiped) or gave up.
    handoff_sweep_after_s: int = 60  # paid this long ago and the column still not told: tell it
    handoff_sweep_batch: int = 500  # orders per run, oldest payment first
    refund_submit_after_s: int = 60  # a refund still ``requested`` after this is (re)submitted
    refund_query_after_s: int = 10 * 60  # a refund still ``processing`` after this is asked about
    refund_sweep_batch: int = 200  # refunds per run, oldest first
    # A sweep takes no new order or refund after this, so it ends before the next minute's tick;
    # what is left goes to the next run, oldest first.
    sweep_budget_s: float = 40.0
    reconcile_cron: str = "30 2 * * *"  # UTC: 10:30 China time, after bills are published
    wechat_v2: WeChatV2Block | None = None
    wechat_v3: WeChatV3Block | None = None
    alipay: AlipayBlock | None = None

    @field_validator("notify_base_url", "sandbox_url")
    @classmethod
    def _urls(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        return check_base_url(f"WOJIA_PAYMENTS_{str(info.field_name).upper()}", value)

    @model_validator(mode="after")
    def _check(self) -> Self:
        env = get_settings().environment
        if self.mode == "sandbox" and env not in {"development", "test"}:
            raise ValueError("WOJIA_PAYMENTS_MODE=sandbox is refused outside development and test")
        if self.mode == "live" and not (self.wechat_v2 or self.wechat_v3 or self.alipay):
            raise ValueError("WOJIA_PAYMENTS_MODE=live needs at least one provider block")
        return self

    @property
    def notify_base(self) -> str:
        return (self.notify_base_url or get_settings().public_base_url).rstrip("/")

    @property
    def sandbox_base(self) -> str:
        """Where the sandboxes are reached, resolved now (``WOJIA_PUBLIC_BASE_URL`` moves it)."""
        return adapter_url("WOJIA_PAYMENTS_SANDBOX_URL", self.sandbox_url, SANDBOX_PREFIX)


@lru_cache
def get_payments_settings() -> PaymentsSettings:
    return PaymentsSettings()
