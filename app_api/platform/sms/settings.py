"""SMS gateway settings (``WOJIA_SMS_*``).

``WOJIA_SMS_TEMPLATES`` binds each message kind to the provider's approved template, as JSON::

    {"login_code": {"id": "1234567", "params": ["code", "minutes"]},
     "gov.status_changed": {"id": "SMS_4711", "params": 4}}

``params`` is the approved template's parameters: their names in the template's order (Tencent's
``{1}``, ``{2}``... or Aliyun's ``${name}`` variables), or only their count, in which case they are
sent in the kind's declared order. Start-up refuses (outside development) a kind without a template
or a template whose parameters do not match the kind's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Self

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app_api.core.settings import WojiaSettings


class TemplateBinding(BaseModel):
    id: str = Field(min_length=1)
    params: list[str] | int


class SmsSettings(WojiaSettings):
    model_config = SettingsConfigDict(
        env_prefix="WOJIA_SMS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # "sandbox" records messages for the development inbox (GET /api/v1/dev/sms).
    provider: Literal["sandbox", "tencent", "aliyun"] = "sandbox"
    # The approved signature (签名) both providers put in front of every message.
    sign_name: str = ""
    templates: dict[str, TemplateBinding] = Field(default_factory=dict)
    # The provider's API host ("host[:port]"; empty: the SDK's default) and scheme; a loopback
    # sandbox in tests.
    endpoint: str = ""
    scheme: Literal["https", "http"] = "https"

    tencent_secret_id: SecretStr | None = None
    tencent_secret_key: SecretStr | None = None
    tencent_app_id: str = ""  # SmsSdkAppId
    tencent_region: str = "ap-guangzhou"

    aliyun_access_key_id: SecretStr | None = None
    aliyun_access_key_secret: SecretStr | None = None
    aliyun_region: str = "cn-hangzhou"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.provider == "tencent" and not (
            self.tencent_secret_id and self.tencent_secret_key and self.tencent_app_id and self.sign_name
        ):
            raise ValueError(
                "WOJIA_SMS_TENCENT_SECRET_ID, WOJIA_SMS_TENCENT_SECRET_KEY, WOJIA_SMS_TENCENT_APP_ID and "
                "WOJIA_SMS_SIGN_NAME are required for WOJIA_SMS_PROVIDER=tencent"
            )
        if self.provider == "aliyun" and not (
            self.aliyun_access_key_id and self.aliyun_access_key_secret and self.sign_name
        ):
            raise ValueError(
                "WOJIA_SMS_ALIYUN_ACCESS_KEY_ID, WOJIA_SMS_ALIYUN_ACCESS_KEY_SECRET and WOJIA_SMS_SIGN_NAME "
                "are required for WOJIA_SMS_PROVIDER=aliyun"
            )
        return self


@lru_cache
def get_sms_settings() -> SmsSettings:
    return SmsSettings()
