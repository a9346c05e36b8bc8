"""SMS gateway adapters: a sandbox that records messages, and Tencent Cloud SMS for production."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Protocol

from app_api.core.errors import UpstreamError
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings

SANDBOX_KEEP = 50
SANDBOX_TTL_S = 24 * 3600


class SmsGateway(Protocol):
    async def send(self, phone: str, text: str, *, template: str, params: list[str]) -> str:
        """Send one message; return the gateway's message id. Raise UpstreamError on failure."""
        ...


class SandboxSms:
    """Records messages in Redis (so every api worker and the dev endpoint see the same inbox)."""

    async def send(self, phone: str, text: str, *, template: str, params: list[str]) -> str:
        r = await get_redis()
        msg_id = f"sbx-{time.time_ns()}"
        key = f"sms:sandbox:{phone}"
        entry = json.dumps(
            {"id": msg_id, "text": text, "template": template, "params": params, "at": time.time()},
            ensure_ascii=False,
        )
        async with r.pipeline(transaction=True) as p:
            p.lpush(key, entry)
            p.ltrim(key, 0, SANDBOX_KEEP - 1)
            p.expire(key, SANDBOX_TTL_S)
            await p.execute()
        return msg_id

    async def inbox(self, phone: str) -> list[dict[str, object]]:
        r = await get_redis()
        return [json.loads(x) for x in await r.lrange(f"sms:sandbox:{phone}", 0, -1)]


class TencentSms:
    """Tencent Cloud SMS (tencentcloud-sdk-python-sms); the SDK blocks, so it runs in a thread."""

    def __init__(self) -> None:
        s = get_settings()
        if not (s.tencent_sms_secret_id and s.tencent_sms_secret_key):
            raise RuntimeError("WOJIA_TENCENT_SMS_SECRET_ID/KEY are required for the tencent SMS provider")
        from tencentcloud.common import credential
        from tencentcloud.sms.v20210111 import sms_client

        cred = credential.Credential(
            s.tencent_sms_secret_id.get_secret_value(), s.tencent_sms_secret_key.get_secret_value()
        )
        self._client = sms_client.SmsClient(cred, s.tencent_sms_region)
        self._s = s

    async def send(self, phone: str, text: str, *, template: str, params: list[str]) -> str:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.sms.v20210111 import models

        req = models.SendSmsRequest()
        req.SmsSdkAppId = self._s.tencent_sms_app_id
        req.SignName = self._s.tencent_sms_sign
        req.TemplateId = self._s.tencent_sms_template_id
        req.TemplateParamSet = params
        req.PhoneNumberSet = [f"+86{phone}"]
        try:
            resp = await asyncio.to_thread(self._client.SendSms, req)
        except TencentCloudSDKException as e:
            raise UpstreamError("短信发送失败，请稍后再试", upstream_code=e.code) from e
        status = resp.SendStatusSet[0]
        if status.Code != "Ok":
            raise UpstreamError("短信发送失败，请稍后再试", upstream_code=status.Code)
        return str(status.SerialNo)


_gateway: SmsGateway | None = None


def get_sms() -> SmsGateway:
    global _gateway
    if _gateway is None:
        _gateway = TencentSms() if get_settings().sms_provider == "tencent" else SandboxSms()
    return _gateway
