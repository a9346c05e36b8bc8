"""The SMS gateway: message kinds with declared parameters, one approved template per kind, and the
providers (the development sandbox, Tencent Cloud SMS, Aliyun SMS) chosen by ``WOJIA_SMS_PROVIDER``.

Modules: ``templates`` (kinds and their parameters), ``settings`` (``WOJIA_SMS_*``), ``gateway``
(the contract, ``SmsFailed``, the sandbox gateway), ``tencent`` and ``aliyun`` (the
SDK adapters), ``checks`` (the start-up check); ``sandbox/`` holds the providers' protocol sandboxes
(development and tests only).
"""

from __future__ import annotations

from app_api.platform.sms.checks import SmsTemplatesInvalid, check_templates, startup_check
from app_api.platform.sms.gateway import SandboxSms, SmsFailed, SmsGateway, build_gateway
from app_api.platform.sms.settings import get_sms_settings
from app_api.platform.sms.templates import SmsTemplate, declare, declared, params_of

__all__ = [
    "SandboxSms",
    "SmsFailed",
    "SmsGateway",
    "SmsTemplate",
    "SmsTemplatesInvalid",
    "build_gateway",
    "check_templates",
    "declare",
    "declared",
    "get_sms",
    "params_of",
    "set_sms",
    "startup_check",
]

_gateway: SmsGateway | None = None


def get_sms() -> SmsGateway:
    """The process's gateway, built from ``WOJIA_SMS_*`` on first use."""
    global _gateway
    if _gateway is None:
        _gateway = build_gateway(get_sms_settings())
    return _gateway


def set_sms(gateway: SmsGateway | None) -> None:
    """Replace the process's gateway (None: build it again from the settings on next use)."""
    global _gateway
    _gateway = gateway
