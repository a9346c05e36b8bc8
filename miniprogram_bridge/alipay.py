"""Alipay mini-program login: ``alipay.system.oauth.token`` through the official SDK (RSA2).

The SDK (``alipay.aop.api``, ~439 MB) is imported only when an Alipay login actually runs, and it
blocks, so it runs in a thread. It signs the request with the app's PKCS#1 key and verifies the
answer's signature with Alipay's public key; an answer that fails verification is refused.
``WebUtils.get_http_connection`` drops a port in the gateway URL: a corrected copy is installed
once (identical for the real gateway, https without a port).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

from miniprogram_bridge import errors
from miniprogram_bridge.config import get_mp_settings

_lock = threading.Lock()
_client: Any = None
_patched = False


@dataclass(frozen=True, slots=True)
class AlipayUser:
    open_id: str  # open_id for new apps; the 2088... user_id for older ones
    user_id: str | None


def _pem_body(key: str) -> str:
    return "".join(line for line in key.strip().splitlines() if not line.startswith("-----"))


def _install_port_fix() -> None:
    global _patched
    if _patched:
        return
    import http.client

    from alipay.aop.api.util import WebUtils

    def get_http_connection(url: str, query_string: str, timeout: float) -> Any:
        parts = urllib.parse.urlparse(url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or ""
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host=host, port=port, timeout=timeout)
            if secure
            else http.client.HTTPConnection(host=host, port=port, timeout=timeout)
        )
        return f"{parts.scheme}://{parts.netloc}{parts.path}?{query_string}", conn

    WebUtils.get_http_connection = get_http_connection
    _patched = True


def client() -> Any:
    global _client
    s = get_mp_settings()
    if not s.alipay_configured or s.alipay_private_key is None:
        raise errors.AlipayNotConfigured()
    private = s.alipay_private_key.get_secret_value()
    if "BEGIN PRIVATE KEY" in private:
        raise errors.AlipayNotConfigured("支付宝应用私钥须为 PKCS#1 格式")
    with _lock:
        if _client is None:
            from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
            from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient

            _install_port_fix()
            cfg = AlipayClientConfig()
            cfg.server_url = s.alipay_server_url
            cfg.app_id = s.alipay_app_id
            cfg.app_private_key = _pem_body(private)
            cfg.alipay_public_key = _pem_body(s.alipay_public_key)
            cfg.sign_type = "RSA2"
            cfg.charset = "utf-8"
            cfg.timeout = int(s.timeout_s)
            _client = DefaultAlipayClient(alipay_client_config=cfg)
        return _client


def reset() -> None:
    global _client
    with _lock:
        _client = None


def _oauth_token(auth_code: str) -> dict[str, Any]:
    from alipay.aop.api.exception.Exception import AopException, RequestException, ResponseException
    from alipay.aop.api.request.AlipaySystemOauthTokenRequest import AlipaySystemOauthTokenRequest

    req = AlipaySystemOauthTokenRequest()
    req.grant_type = "authorization_code"
    req.code = auth_code
    try:
        content = client().execute(req)
    except ResponseException as e:
        # Bad signature on the answer, or a garbled answer: never trusted.
        raise errors.AlipayUnavailable("支付宝返回的信息未通过验签", reason="signature") from e
    except (AopException, RequestException, OSError) as e:
        raise errors.AlipayUnavailable(reason="unreachable") from e
    try:
        data = json.loads(content)
    except ValueError as e:
        raise errors.AlipayUnavailable(reason="malformed") from e
    return data if isinstance(data, dict) else {}


async def oauth_token(auth_code: str) -> AlipayUser:
    data = await asyncio.to_thread(_oauth_token, auth_code)
    sub_code = data.get("sub_code")
    if sub_code:
        if sub_code in ("isv.code-invalid", "isv.invalid-auth-code", "isv.auth-code-expired"):
            raise errors.LoginCodeInvalid(
                "支付宝授权码无效或已过期，请重新进入小程序", alipay_sub_code=sub_code
            )
        raise errors.AlipayUnavailable(alipay_sub_code=sub_code)
    open_id = data.get("open_id") or data.get("user_id")
    if not open_id:
        raise errors.AlipayUnavailable("支付宝返回的登录信息不完整")
    return AlipayUser(open_id=str(open_id), user_id=data.get("user_id"))
