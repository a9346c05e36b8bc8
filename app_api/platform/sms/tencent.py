"""Tencent Cloud SMS through its official SDK (``tencentcloud-sdk-python-sms``, API 2021-01-11).

``SendSms`` with the kind's approved ``TemplateId`` and ``TemplateParamSet`` in the template's
parameter order, under ``SmsSdkAppId`` and ``SignName``. The SDK blocks, so it runs in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from app_api.platform.sms.gateway import SmsFailed, binding_of, provider_order, template_of, values
from app_api.platform.sms.settings import SmsSettings

# Errors worth sending the same message again for; everything else (a template refused, a bad
# parameter, an unauthorised account) fails the same way next time.
RETRYABLE_PREFIXES = (
    "InternalError",
    "ClientNetworkError",
    "ServerNetworkError",
    "RequestLimitExceeded",
    "LimitExceeded",
)


def _retryable(code: str) -> bool:
    return code.startswith(RETRYABLE_PREFIXES)


class TencentSms:
    name = "tencent"

    def __init__(self, settings: SmsSettings) -> None:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import sms_client

        if not (settings.tencent_secret_id and settings.tencent_secret_key):
            raise RuntimeError("WOJIA_SMS_TENCENT_SECRET_ID/KEY are required for the tencent SMS provider")
        cred = credential.Credential(
            settings.tencent_secret_id.get_secret_value(), settings.tencent_secret_key.get_secret_value()
        )
        http = HttpProfile(protocol=settings.scheme, endpoint=settings.endpoint or None, reqTimeout=10)
        self._client = sms_client.SmsClient(cred, settings.tencent_region, ClientProfile(httpProfile=http))
        self._s = settings

    async def send(
        self, phone: str, kind: str, params: Mapping[str, object], *, text: str | None = None
    ) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111 import models

        spec = template_of(kind)
        binding = binding_of(self._s, kind)
        named = values(spec, params)
        req = models.SendSmsRequest()
        req.SmsSdkAppId = self._s.tencent_app_id
        req.SignName = self._s.sign_name
        req.TemplateId = binding.id
        req.TemplateParamSet = [named[name] for name in provider_order(spec, binding)]
        req.PhoneNumberSet = [f"+86{phone}"]
        try:
            resp = await asyncio.to_thread(self._client.SendSms, req)
        except TencentCloudSDKException as e:
            code = str(e.get_code() or "unknown")
            raise SmsFailed(
                "短信发送失败，请稍后再试",
                provider=self.name,
                kind=kind,
                upstream_code=code,
                upstream_message=str(e.get_message() or ""),
                retryable=_retryable(code),
            ) from e
        status = resp.SendStatusSet[0]
        if status.Code != "Ok":
            raise SmsFailed(
                "短信发送失败，请稍后再试",
                provider=self.name,
                kind=kind,
                upstream_code=str(status.Code),
                upstream_message=str(status.Message or ""),
                retryable=_retryable(str(status.Code)),
            )
        return str(status.SerialNo)
