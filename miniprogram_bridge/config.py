"""Settings of the mini-program bridge (prefix ``WOJIA_MP_``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings, get_settings

DEV_WECHAT_SECRET = "dev-wechat-mini-program-secret"


class MiniProgramSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_MP_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    wechat_app_id: str = "wx0000000000000dev"
    wechat_app_secret: SecretStr = SecretStr(DEV_WECHAT_SECRET)
    # Root of the WeChat server API; the sandbox serves the same paths on loopback.
    wechat_api_base: str = "https://api.weixin.qq.com/"
    # Event key (notification template) -> subscription-message template id chosen in the console.
    wechat_template_ids: dict[str, str] = Field(default_factory=dict)

    alipay_app_id: str = ""
    # The app's private key in PKCS#1 ("BEGIN RSA PRIVATE KEY"): the official SDK fails on PKCS#8.
    alipay_private_key: SecretStr | None = None
    alipay_public_key: str = ""
    alipay_server_url: str = "https://openapi.alipay.com/gateway.do"

    # A first login without a bound phone gets a ticket to finish binding with; single use.
    bind_ticket_ttl_s: int = 600
    timeout_s: float = 10.0

    @model_validator(mode="after")
    def _check(self) -> Self:
        self.refuse_dev_secrets(
            get_settings().environment,
            {"WOJIA_MP_WECHAT_APP_SECRET": (self.wechat_app_secret, DEV_WECHAT_SECRET)},
        )
        return self

    @property
    def alipay_configured(self) -> bool:
        return bool(self.alipay_app_id and self.alipay_private_key and self.alipay_public_key)


@lru_cache
def get_mp_settings() -> MiniProgramSettings:
    return MiniProgramSettings()
