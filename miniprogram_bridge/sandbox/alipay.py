"""Loopback sandbox of Alipay's OAuth gateway: the official Alipay SDK talks to it unchanged.

``AlipayOAuthSandbox``: ``/gateway.do`` for ``alipay.system.oauth.token``. Key pairs are generated
at start: the app's private key is handed out in PKCS#1 form (what the SDK needs), the sandbox
keeps its public half and refuses requests whose RSA2 signature does not verify; answers are
signed with the sandbox's "Alipay" key.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Authorization codes from the Alipay client expire after 5 minutes, like WeChat's login codes.
CODE_TTL_S = 300


def _pkcs1(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign_content(params: dict[str, str]) -> str:
    """The SDK's canonical form (``get_sign_content``): sorted ``k=v`` joined by ``&``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params))


@dataclass
class AlipayApp:
    app_id: str
    key: rsa.RSAPrivateKey

    @property
    def private_key_pkcs1(self) -> str:
        return _pkcs1(self.key)


@dataclass
class _AuthCode:
    app_id: str
    open_id: str
    user_id: str
    issued: float
    used: bool = False


class AlipayOAuthSandbox:
    def __init__(self) -> None:
        self.alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.apps: dict[str, AlipayApp] = {}
        self.codes: dict[str, _AuthCode] = {}
        self.rejected: list[str] = []  # sub_codes answered, newest last
        self.sign_with_wrong_key = False
        self.app = Starlette(
            routes=[
                Route("/gateway.do", self._gateway, methods=["POST", "GET"]),
                Route("/_sandbox/auth-code", self._c_auth_code, methods=["POST"]),
            ]
        )

    @property
    def alipay_public_key_pem(self) -> str:
        return _public(self.alipay_key)

    def add_app(self, app_id: str | None = None) -> AlipayApp:
        app = AlipayApp(
            app_id or "2021" + f"{secrets.randbelow(10**12):012d}",
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
        )
        self.apps[app.app_id] = app
        return app

    def auth_code(self, app_id: str, open_id: str | None = None) -> str:
        """What ``my.getAuthCode()`` hands the mini-program for one user."""
        code = secrets.token_hex(16)
        self.codes[code] = _AuthCode(
            app_id,
            open_id or "0" + secrets.token_hex(16),
            "2088" + f"{secrets.randbelow(10**12):012d}",
            time.time(),
        )
        return code

    def _respond(self, key: str, payload: dict[str, Any]) -> Response:
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        signer = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if self.sign_with_wrong_key
            else self.alipay_key
        )
        sig = base64.b64encode(signer.sign(content.encode(), PKCS1v15(), SHA256())).decode()
        return Response(
            f'{{"{key}":{content},"sign":"{sig}"}}'.encode(), media_type="text/html;charset=utf-8"
        )

    def _error(
        self, sub_code: str, sub_msg: str, code: str = "40002", msg: str = "Invalid Arguments"
    ) -> Response:
        self.rejected.append(sub_code)
        return self._respond(
            "error_response", {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}
        )

    async def _gateway(self, request: Request) -> Response:
        params = dict(urllib.parse.parse_qsl(request.url.query, keep_blank_values=True))
        body = await request.body()
        if body:
            params.update(urllib.parse.parse_qsl(body.decode("ascii", "replace"), keep_blank_values=True))
        app = self.apps.get(params.get("app_id", ""))
        if app is None:
            return self._error("isv.invalid-app-id", "无效的AppID参数")
        if params.get("sign_type") != "RSA2":
            return self._error("isv.invalid-signature-type", "无效的签名类型")
        unsigned = {k: v for k, v in params.items() if k != "sign"}
        try:
            app.key.public_key().verify(
                base64.b64decode(params.get("sign", "")),
                sign_content(unsigned).encode(),
                PKCS1v15(),
                SHA256(),
            )
        except (InvalidSignature, ValueError):
            return self._error("isv.invalid-signature", "验签出错")
        try:
            ts = dt.datetime.strptime(params.get("timestamp", ""), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return self._error("isv.invalid-timestamp", "非法的时间戳参数")
        # The SDK stamps local time; accept a day either way (machines here run in UTC).
        if abs((ts - dt.datetime.now()).total_seconds()) > 86400:
            return self._error("isv.invalid-timestamp", "时间戳已过期")
        if params.get("method") != "alipay.system.oauth.token":
            return self._error("isv.invalid-method", "不存在的方法名", code="40004", msg="Business Failed")
        if params.get("grant_type") != "authorization_code":
            return self._error("isv.grant-type-invalid", "grant_type参数不正确")
        c = self.codes.get(params.get("code", ""))
        if c is None or c.app_id != app.app_id or c.used or time.time() - c.issued > CODE_TTL_S:
            return self._error("isv.code-invalid", "授权码code无效")
        c.used = True
        return self._respond(
            "alipay_system_oauth_token_response",
            {
                "user_id": c.user_id,
                "open_id": c.open_id,
                "access_token": "authusrB" + secrets.token_hex(16),
                "expires_in": 1296000,
                "refresh_token": "authusrB" + secrets.token_hex(16),
                "re_expires_in": 2592000,
                "auth_start": dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            },
        )

    async def _c_auth_code(self, request: Request) -> Response:
        d = json.loads(await request.body() or b"{}")
        return JSONResponse({"auth_code": self.auth_code(str(d.get("app_id", "")), d.get("open_id"))})
