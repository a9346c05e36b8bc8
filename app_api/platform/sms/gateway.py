"""The SMS gateway contract, its errors, the development sandbox gateway and ``get_sms()``.

A message is a *kind* (declared in ``templates``) and its parameters by name. Each gateway sends the
kind's parameters in the order (Tencent) or under the names (Aliyun) its approved template declares,
under the template bound to the kind in ``WOJIA_SMS_TEMPLATES``. The provider is chosen by
``WOJIA_SMS_PROVIDER``: ``sandbox`` (development default: an inbox at ``GET /api/v1/dev/sms``),
``tencent`` or ``aliyun``; ``app_api.platform.sms.get_sms()`` keeps the process's gateway.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from app_api.core.errors import UpstreamError
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform.sms.settings import SmsSettings, TemplateBinding
from app_api.platform.sms.templates import SmsTemplate, find

log = logging.getLogger(__name__)

SANDBOX_KEEP = 50
SANDBOX_TTL_S = 24 * 3600


class SmsFailed(UpstreamError):
    """The message was not sent. ``upstream_code``: the provider's code (or ours: ``template_unbound``,
    ``unreachable``); ``retryable``: whether sending the same message again later may succeed."""

    code = "sms.failed"
    title = "短信发送失败，请稍后再试"
    status = 502


class SmsGateway(Protocol):
    name: str

    async def send(
        self, phone: str, kind: str, params: Mapping[str, object], *, text: str | None = None
    ) -> str:
        """Send one message of ``kind``; return the gateway's message id. ``text``: the rendered
        message when the caller already has it (the sandbox records it). Raise ``SmsFailed``."""
        ...


def template_of(kind: str) -> SmsTemplate:
    spec = find(kind)
    if spec is None:
        raise SmsFailed("短信模板未定义", upstream_code="template_undeclared", kind=kind, retryable=False)
    return spec


def values(spec: SmsTemplate, params: Mapping[str, object]) -> dict[str, str]:
    """The kind's parameters as text, in its declared order; a missing one is sent empty (and logged)."""
    out: dict[str, str] = {}
    for name in spec.params:
        value = params.get(name)
        if name not in params:
            log.warning("sms %s: parameter %r missing, sent empty", spec.kind, name)
        out[name] = "" if value is None else str(value)
    return out


def binding_of(settings: SmsSettings, kind: str) -> TemplateBinding:
    binding = settings.templates.get(kind)
    if binding is None:
        raise SmsFailed("短信模板未配置", upstream_code="template_unbound", kind=kind, retryable=False)
    return binding


def provider_order(spec: SmsTemplate, binding: TemplateBinding) -> tuple[str, ...]:
    """The parameter names in the approved template's order (the declared order when only counted)."""
    return tuple(binding.params) if isinstance(binding.params, list) else spec.params


def build_gateway(settings: SmsSettings) -> SmsGateway:
    """The gateway ``WOJIA_SMS_PROVIDER`` names (``get_sms()`` in the package keeps one per process)."""
    if settings.provider == "tencent":
        from app_api.platform.sms.tencent import TencentSms

        return TencentSms(settings)
    if settings.provider == "aliyun":
        from app_api.platform.sms.aliyun import AliyunSms

        return AliyunSms(settings)
    return SandboxSms()


class SandboxSms:
    """Records messages in Redis (so every api worker and the dev endpoint see the same inbox)."""

    name = "sandbox"

    async def send(
        self, phone: str, kind: str, params: Mapping[str, object], *, text: str | None = None
    ) -> str:
        spec = template_of(kind)
        ordered = values(spec, params)
        r = await get_redis()
        msg_id = f"sbx-{time.time_ns()}"
        key = f"sms:sandbox:{phone}"
        entry = json.dumps(
            {
                "id": msg_id,
                "text": text or spec.render(ordered, sign=f"我家{get_settings().city_name}"),
                "template": kind,
                "params": list(ordered.values()),
                "at": time.time(),
            },
            ensure_ascii=False,
        )
        async with r.pipeline(transaction=True) as p:
            p.lpush(key, entry)
            p.ltrim(key, 0, SANDBOX_KEEP - 1)
            p.expire(key, SANDBOX_TTL_S)
            await p.execute()
        return msg_id

    async def inbox(self, phone: str) -> list[dict[str, Any]]:
        r = await get_redis()
        return [json.loads(x) for x in await r.lrange(f"sms:sandbox:{phone}", 0, -1)]
