"""Message templates: one per event, registered by the package or column that sends it."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from app_api.core.settings import get_settings
from app_api.platform import sms


@dataclass(frozen=True)
class TemplateSpec:
    """One event's message: the SMS text and, optionally, a WeChat subscription-message layout.

    ``wechat_fields`` maps the keywords of the WeChat template chosen in the mini-program console
    (``thing1``, ``time2``, ``phrase3`` ...) to ``$name`` templates over ``params``; the template id
    itself is deployment configuration (``WOJIA_MP_WECHAT_TEMPLATE_IDS``).
    """

    key: str
    text: str
    category: str
    wechat_fields: dict[str, str] | None = None
    wechat_page: str | None = None


_templates: dict[str, TemplateSpec] = {}


def register_template(
    key: str,
    text: str,
    *,
    category: str | None = None,
    wechat_fields: dict[str, str] | None = None,
    wechat_page: str | None = None,
) -> None:
    """``text`` uses ``$name`` placeholders (string.Template), filled from ``params``.

    ``category`` (default: the key's prefix, ``gov`` for ``gov.status_changed``) is what residents
    mute in their preferences.
    """
    # The same key is the SMS message kind; its parameters are the text's placeholders in order.
    sms.declare(key, text)
    _templates[key] = TemplateSpec(
        key=key,
        text=text,
        category=category or key.split(".", 1)[0],
        wechat_fields=dict(wechat_fields) if wechat_fields else None,
        wechat_page=wechat_page,
    )


def get_template(key: str) -> TemplateSpec:
    if key not in _templates:
        raise KeyError(f"unknown notification template {key!r}")
    return _templates[key]


def find_template(key: str) -> TemplateSpec | None:
    return _templates.get(key)


def categories() -> list[str]:
    """The categories residents can mute, sorted."""
    return sorted({t.category for t in _templates.values()})


def templates() -> dict[str, TemplateSpec]:
    return dict(_templates)


register_template("app.generic", "$text")


def render(template_key: str, params: dict[str, Any]) -> str:
    spec = get_template(template_key)
    city = get_settings().city_name
    return f"【我家{city}】" + string.Template(spec.text).safe_substitute(params)
