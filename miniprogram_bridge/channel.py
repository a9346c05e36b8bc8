"""WeChat subscription messages as a notification channel (registered with ``app_api.platform.notify``).

A template reaches WeChat when it has a WeChat layout (``wechat_fields``) and the deployment names
its subscription template id (``WOJIA_MP_WECHAT_TEMPLATE_IDS``). WeChat limits each keyword kind
(``thing`` at most 20 characters, ``phrase`` 5, ...): values are cut to fit, because WeChat refuses
the whole message (47003) otherwise.
"""

from __future__ import annotations

import logging
import re
import string
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform import notify
from miniprogram_bridge import wechat
from miniprogram_bridge.config import get_mp_settings

log = logging.getLogger(__name__)

# What subscribeMessage.send's errors mean for a message (WeChat's documentation of the call,
# https://developers.weixin.qq.com/miniprogram/dev/server/API/mp-message-management/subscribe-message/api_sendmessage.html
# "错误码", and the global return codes,
# https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html).
#
# This resident cannot get it on WeChat (refused: the next channel at once, the grant we counted is
# cleared): 43101 "user refuse to accept the msg" (no one-time grant left, or unsubscribed in
# settings), 40003 "invalid openid" (not this mini-program's user).
REFUSED = frozenset({wechat.USER_REFUSED, wechat.INVALID_OPENID})
# The message can never go out as it is (permanent: the next channel at once): 40037 "invalid
# template_id" (deleted in the console, or another app's), 47003 "argument invalid" (keywords not the
# template's, a value over its kind's limit), 41030 "invalid page" (not in the released mini-program),
# 43107 subscribe messages banned for this app, 45168 content hits the sensitive-word filter; and the
# app's own configuration, which no retry mends: 40013 invalid appid, 40125 invalid appsecret, 48001
# api unauthorized.
PERMANENT = frozenset(
    {wechat.INVALID_TEMPLATE, wechat.ARGUMENT_INVALID, 41030, 43107, 45168, 40013, 40125, 48001}
)
# Everything else is transient (retried after the backoff, then SMS after the channel's cap): no
# errcode (network, timeout, HTTP 5xx: wechatpy raises without one), -1 "system error" (busy), 45009
# daily quota and 45011 minute quota reached, 43108 concurrent calls for the same openid, 40001 /
# 40014 / 42001 access token (wechatpy fetches a new token and repeats once), and codes not listed.

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
            raise channel_error(e) from e


def channel_error(e: wechat.WeChatApiError) -> notify.ChannelError:
    """A failed subscribeMessage.send as the notification service sees it (see PERMANENT above)."""
    code = f"wechat.{e.errcode if e.errcode is not None else 'unreachable'}"
    if e.errcode in REFUSED:
        return notify.ChannelError(code, e.errmsg, refused=True)
    if e.errcode in PERMANENT:
        if e.errcode == wechat.INVALID_TEMPLATE:
            # Every resident's message of this event fails the same way until the deployment's
            # template id is fixed: worth an operator's attention, not only a fallback.
            log.error("WeChat refuses the subscription template: %s", e.errmsg)
        return notify.ChannelError(code, e.errmsg, retryable=False)
    return notify.ChannelError(code, e.errmsg, retryable=True)


notify.register_channel(WeChatChannel())
