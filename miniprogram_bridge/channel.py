"""WeChat subscription messages as a notification channel (registered with ``app_api.platform.notify``).

A template reaches WeChat when it has a WeChat layout (``wechat_fields``) and the deployment names
its subscription template id (``WOJIA_MP_WECHAT_TEMPLATE_IDS``). WeChat limits each keyword kind
(``thing`` at most 20 characters, ``phrase`` 5, ...): values are cut to fit, because WeChat refuses
the whole message (47003) otherwise.
"""

from __future__ import annotations

import re
import string
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform import notify
from miniprogram_bridge import wechat
from miniprogram_bridge.config import get_mp_settings

LIMITS = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "character_string": 32,
    "number": 32,
    "letter": 32,
    "car_number": 8,
    "symbol": 5,
    "amount": 16,
    "phone_number": 17,
}


def _limit(keyword: str) -> int | None:
    kind = re.sub(r"\d+$", "", keyword)
    return LIMITS.get(kind)


def message_data(spec: notify.TemplateSpec, params: dict[str, Any]) -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = {}
    for keyword, tpl in (spec.wechat_fields or {}).items():
        value = string.Template(tpl).safe_substitute({k: str(v) for k, v in params.items()})
        limit = _limit(keyword)
        if limit is not None and len(value) > limit:
            value = value[: limit - 1] + "…" if limit > 5 else value[:limit]
        data[keyword] = {"value": value}
    return data


class WeChatChannel:
    name = "wechat"
    needs_subscription = True

    def supports(self, spec: notify.TemplateSpec) -> bool:
        return bool(spec.wechat_fields) and spec.key in get_mp_settings().wechat_template_ids

    async def address(self, session: AsyncSession, account_id: str) -> str | None:
        from miniprogram_bridge.service import wechat_openid_of

        return await wechat_openid_of(session, account_id)

    async def deliver(
        self, address: str, notification: notify.Notification, spec: notify.TemplateSpec
    ) -> str:
        template_id = get_mp_settings().wechat_template_ids[spec.key]
        try:
            return (
                await wechat.send_subscribe_message(
                    address, template_id, message_data(spec, notification.params), spec.wechat_page
                )
                or "wechat"
            )
        except wechat.WeChatApiError as e:
            code = f"wechat.{e.errcode}"
            if e.errcode in (wechat.USER_REFUSED, wechat.INVALID_OPENID):
                raise notify.ChannelError(code, e.errmsg, refused=True) from e
            if e.errcode == wechat.ARGUMENT_INVALID:
                raise notify.ChannelError(code, e.errmsg, retryable=False) from e
            raise notify.ChannelError(code, e.errmsg, retryable=True) from e


notify.register_channel(WeChatChannel())
