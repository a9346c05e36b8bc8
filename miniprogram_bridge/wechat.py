"""The WeChat server API through wechatpy: code2session, phone numbers, subscription messages.

wechatpy is blocking (requests), so every call runs in a thread. Its base URLs are attributes of
the client objects, pointed here at ``wechat_api_base`` (the real API or the loopback sandbox);
``fetch_access_token`` hard-codes the real host in wechatpy, so it is overridden to follow the base.
Access tokens are cached by wechatpy's session storage: in Redis when a real Redis is configured,
so every api and worker process shares one token (fetching a new one retires the old after a while).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from miniprogram_bridge import errors
from miniprogram_bridge.config import get_mp_settings

# WeChat error codes this package acts on.
CODE_INVALID = 40029
CODE_USED = 40163
RATE_LIMITED = 45011
SYSTEM_BUSY = -1
USER_REFUSED = 43101
INVALID_OPENID = 40003
ARGUMENT_INVALID = 47003
INVALID_TEMPLATE = 40037


@dataclass(frozen=True, slots=True)
class Session:
    openid: str
    session_key: str
    unionid: str | None


class WeChatApiError(Exception):
    def __init__(self, errcode: int | None, errmsg: str) -> None:
        super().__init__(f"{errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


_lock = threading.Lock()
_client: Any = None


def _make_client() -> Any:
    from wechatpy import WeChatClient

    s = get_mp_settings()
    base = s.wechat_api_base if s.wechat_api_base.endswith("/") else s.wechat_api_base + "/"

    class Client(WeChatClient):  # type: ignore[misc]
        API_BASE_URL = base + "cgi-bin/"

        def fetch_access_token(self) -> Any:
            return self._fetch_access_token(
                url=base + "cgi-bin/token",
                params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
            )

    storage = None
    from app_api.core.settings import get_settings

    app_settings = get_settings()
    if not app_settings.redis_is_memory:
        import redis
        from wechatpy.session.redisstorage import RedisStorage

        storage = RedisStorage(redis.Redis.from_url(app_settings.redis_url), prefix="wojia:wechatpy")
    client = Client(
        s.wechat_app_id, s.wechat_app_secret.get_secret_value(), session=storage, timeout=s.timeout_s
    )
    client.wxa.API_BASE_URL = base
    return client


def client() -> Any:
    global _client
    with _lock:
        if _client is None:
            _client = _make_client()
        return _client


def reset() -> None:
    """Forget the client (after settings change: tests, key rotation)."""
    global _client
    with _lock:
        _client = None


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from requests import RequestException
    from wechatpy.exceptions import WeChatClientException

    def run() -> Any:
        try:
            return fn(*args, **kwargs)
        except WeChatClientException as e:
            raise WeChatApiError(e.errcode, str(e.errmsg or "")) from e
        except RequestException as e:
            raise WeChatApiError(None, f"unreachable: {type(e).__name__}") from e

    return await asyncio.to_thread(run)


def _upstream(e: WeChatApiError) -> Exception:
    if e.errcode == RATE_LIMITED:
        return errors.WeChatRateLimited()
    return errors.WeChatUnavailable(wechat_errcode=e.errcode)


async def code_to_session(code: str) -> Session:
    try:
        res = await _call(client().wxa.code_to_session, code)
    except WeChatApiError as e:
        if e.errcode == CODE_INVALID:
            raise errors.LoginCodeInvalid() from e
        if e.errcode == CODE_USED:
            raise errors.LoginCodeUsed() from e
        raise _upstream(e) from e
    openid, session_key = res.get("openid"), res.get("session_key")
    if not openid or not session_key:
        raise errors.WeChatUnavailable("微信返回的登录信息不完整")
    return Session(openid=str(openid), session_key=str(session_key), unionid=res.get("unionid") or None)


async def phone_number(code: str) -> str:
    """The resident's phone from ``getPhoneNumber``'s dynamic code (mainland numbers only)."""
    c = client()
    try:
        res = await _call(
            c.post, "wxa/business/getuserphonenumber", data={"code": code}, api_base_url=c.wxa.API_BASE_URL
        )
    except WeChatApiError as e:
        if e.errcode in (CODE_INVALID, CODE_USED):
            raise errors.PhoneCodeInvalid() from e
        raise _upstream(e) from e
    info = res.get("phone_info") or {}
    if str(info.get("countryCode", "86")) != "86" or not info.get("purePhoneNumber"):
        raise errors.PhoneNotSupported()
    watermark = info.get("watermark") or {}
    if watermark.get("appid") not in (None, get_mp_settings().wechat_app_id):
        raise errors.WeChatUnavailable("手机号信息来源不符")
    return str(info["purePhoneNumber"])


async def send_subscribe_message(
    openid: str, template_id: str, data: dict[str, Any], page: str | None
) -> str:
    """Raise WeChatApiError on failure; return the message id WeChat gives (``msgid``) or ''."""
    res = await _call(client().wxa.send_subscribe_message, openid, template_id, data, page)
    return str(res.get("msgid", "")) if isinstance(res, dict) else ""
