"""Aliyun SMS (Dysmsapi 2017-05-25) through its official SDK (``alibabacloud_dysmsapi20170525``).

``SendSms`` with the kind's approved ``TemplateCode`` and ``TemplateParam``, a JSON object of the
template's variables by name, under ``SignName``. The SDK signs with ACS3-HMAC-SHA256 and blocks,
so it runs in a thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from app_api.platform.sms.gateway import SmsFailed, binding_of, provider_order, template_of, values
from app_api.platform.sms.settings import SmsSettings

# Aliyun answers business refusals as ``Code`` in a 200 body (``isv.SMS_TEMPLATE_ILLEGAL``...);
# these are worth a later retry, the rest fail the same way next time.
RETRYABLE_CODES = {"isp.SYSTEM_ERROR", "isv.BUSINESS_LIMIT_CONTROL", "Throttling", "ServiceUnavailable"}


class AliyunSms:
    name = "aliyun"

    def __init__(self, settings: SmsSettings) -> None:
        from alibabacloud_dysmsapi20170525.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        if not (settings.aliyun_access_key_id and settings.aliyun_access_key_secret):
            raise RuntimeError(
                "WOJIA_SMS_ALIYUN_ACCESS_KEY_ID/SECRET are required for the aliyun SMS provider"
            )
        config = Config(
            access_key_id=settings.aliyun_access_key_id.get_secret_value(),
            access_key_secret=settings.aliyun_access_key_secret.get_secret_value(),
            region_id=settings.aliyun_region,
            endpoint=settings.endpoint or None,
            protocol=settings.scheme,
            connect_timeout=5000,
            read_timeout=10000,
        )
        self._client = Client(config)
        self._s = settings

    async def send(
        self, phone: str, kind: str, params: Mapping[str, object], *, text: str | None = None
    ) -> str:
        from alibabacloud_dysmsapi20170525 import models
        from darabonba.exceptions import DaraException

        spec = template_of(kind)
        binding = binding_of(self._s, kind)
        named = values(spec, params)
        req = models.SendSmsRequest(
            phone_numbers=phone,
            sign_name=self._s.sign_name,
            template_code=binding.id,
            template_param=json.dumps(
                {name: named[name] for name in provider_order(spec, binding)}, ensure_ascii=False
            ),
        )
        try:
            resp = await asyncio.to_thread(self._client.send_sms, req)
        except DaraException as e:
            code = str(getattr(e, "code", None) or "unknown")
            raise SmsFailed(
                "短信发送失败，请稍后再试",
                provider=self.name,
                kind=kind,
                upstream_code=code,
                upstream_message=str(getattr(e, "message", "") or ""),
                retryable=code in RETRYABLE_CODES or (getattr(e, "status_code", None) or 0) >= 500,
            ) from e
        except Exception as e:  # the SDK's transport errors (refused, timed out, unretryable)
            raise SmsFailed(
                "短信发送失败，请稍后再试",
                provider=self.name,
                kind=kind,
                upstream_code="unreachable",
                upstream_message=type(e).__name__,
                retryable=True,
            ) from e
        body = resp.body
        if body is None or body.code != "OK":
            code = str(getattr(body, "code", None) or "unknown")
            raise SmsFailed(
                "短信发送失败，请稍后再试",
                provider=self.name,
                kind=kind,
                upstream_code=code,
                upstream_message=str(getattr(body, "message", "") or ""),
                retryable=code in RETRYABLE_CODES,
            )
        return str(body.biz_id)
