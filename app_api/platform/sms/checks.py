"""The start-up check: every declared message kind has an approved template with matching parameters.

Outside development a problem refuses start-up with a message naming each kind and what is wrong;
in development (and with the sandbox gateway, which needs no templates) it is only logged.
"""

from __future__ import annotations

import logging

from app_api.core.settings import get_settings
from app_api.platform.sms.settings import SmsSettings, get_sms_settings
from app_api.platform.sms.templates import SmsTemplate, declared

log = logging.getLogger(__name__)


class SmsTemplatesInvalid(RuntimeError):
    """Start-up refused: the configured SMS templates do not cover or match the message kinds."""


def check_templates(settings: SmsSettings, kinds: dict[str, SmsTemplate]) -> list[str]:
    """What is wrong with ``WOJIA_SMS_TEMPLATES`` for these kinds (empty: nothing)."""
    problems: list[str] = []
    for kind, spec in sorted(kinds.items()):
        binding = settings.templates.get(kind)
        want = ", ".join(spec.params) or "none"
        if binding is None:
            problems.append(f"{kind}: no template id in WOJIA_SMS_TEMPLATES (parameters: {want})")
            continue
        if isinstance(binding.params, int):
            if binding.params != len(spec.params):
                problems.append(
                    f"{kind}: template {binding.id} has {binding.params} parameters, "
                    f"the message has {len(spec.params)} ({want})"
                )
            continue
        if len(binding.params) != len(spec.params) or set(binding.params) != set(spec.params):
            problems.append(
                f"{kind}: template {binding.id} has parameters ({', '.join(binding.params) or 'none'}), "
                f"the message has ({want})"
            )
    return problems


async def startup_check() -> None:
    settings = get_sms_settings()
    if settings.provider == "sandbox":
        if not get_settings().is_dev:
            log.warning("WOJIA_SMS_PROVIDER=sandbox outside development: no SMS leaves this deployment")
        return
    problems = check_templates(settings, declared())
    if settings.scheme == "http":
        problems.append("WOJIA_SMS_SCHEME=http sends credentials-signed requests and codes in clear text")
    unknown = sorted(set(settings.templates) - set(declared()))
    if unknown:
        log.warning("WOJIA_SMS_TEMPLATES binds kinds nothing sends: %s", ", ".join(unknown))
    if not problems:
        return
    message = f"SMS templates for WOJIA_SMS_PROVIDER={settings.provider} do not match: " + "; ".join(problems)
    if get_settings().is_dev:
        log.warning(message)
        return
    raise SmsTemplatesInvalid(message)
