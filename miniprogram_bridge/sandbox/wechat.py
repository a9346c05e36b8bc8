"""Loopback sandbox of the WeChat server API: wechatpy talks to it unchanged.

``WeChatSandbox``: ``GET /cgi-bin/token`` (app id and secret checked), ``GET /sns/jscode2session``
(single-use login codes that expire after 5 minutes: 40029 unknown, 40163 used), ``POST
/wxa/business/getuserphonenumber`` and ``POST /cgi-bin/message/subscribe/send`` (access token
checked, 40001 otherwise; one-time subscribe grants consumed per message, 43101 without one;
keywords checked against the template, 47003 on a mismatch or an over-long value; a template id
the app does not hold, 40037, as the real API answers for a template deleted in the mini-program
console or one of another app). Control endpoints under ``/_sandbox`` play the phone: ``wx.login``
(``/_sandbox/login``), the phone button (``/_sandbox/phone-code``), the subscribe prompt
(``/_sandbox/subscribe``); and the console and the network: delete a template
(``/_sandbox/remove-template``), inject failures (``/_sandbox/fail``: an errcode, or an HTTP status
such as 503 as WeChat's gateway answers when overloaded), expire tokens, list delivered messages.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CODE_TTL_S = 300
TOKEN_TTL_S = 7200
# Keyword kinds and their maximum lengths, as WeChat checks them.
KEYWORD_LIMITS = {
    "thing": 20,
    "phrase": 5,
    "name": 10,
    "character_string": 32,
    "number": 32,
    "time": 64,
    "date": 64,
    "amount": 16,
    "phone_number": 17,
    "letter": 32,
    "symbol": 5,
    "car_number": 8,
}


def _err(code: int, msg: str) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": msg})


@dataclass
class _Code:
    appid: str
    openid: str
    unionid: str | None
    issued: float
    used: bool = False


@dataclass
class _PhoneCode:
    appid: str
    phone: str
    country: str
    issued: float
    used: bool = False


@dataclass
class WeChatSandbox:
    apps: dict[str, str] = field(default_factory=dict)  # appid -> secret
    templates: dict[str, list[str]] = field(default_factory=dict)  # template id -> keywords
    codes: dict[str, _Code] = field(default_factory=dict)
    phone_codes: dict[str, _PhoneCode] = field(default_factory=dict)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (appid, expires)
    grants: dict[tuple[str, str], int] = field(default_factory=dict)  # (openid, template id) -> count
    messages: list[dict[str, Any]] = field(default_factory=list)
    # Every subscribe-message call that reached the API (delivered or not) and its errcode.
    sends: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/cgi-bin/token", self._token, methods=["GET"]),
                Route("/sns/jscode2session", self._jscode2session, methods=["GET"]),
                Route("/wxa/business/getuserphonenumber", self._phone, methods=["POST"]),
                Route("/cgi-bin/message/subscribe/send", self._subscribe_send, methods=["POST"]),
                Route("/_sandbox/login", self._c_login, methods=["POST"]),
                Route("/_sandbox/phone-code", self._c_phone_code, methods=["POST"]),
                Route("/_sandbox/subscribe", self._c_subscribe, methods=["POST"]),
                Route("/_sandbox/remove-template", self._c_remove_template, methods=["POST"]),
                Route("/_sandbox/fail", self._c_fail, methods=["POST"]),
                Route("/_sandbox/expire-tokens", self._c_expire, methods=["POST"]),
                Route("/_sandbox/messages", self._c_messages, methods=["GET"]),
            ]
        )

    # -- set-up (also reachable over HTTP for a dev deployment) ---------------------------------

    def add_app(self, appid: str, secret: str) -> None:
        self.apps[appid] = secret

    def add_template(self, template_id: str, keywords: list[str]) -> None:
        self.templates[template_id] = list(keywords)

    def remove_template(self, template_id: str) -> None:
        """The template is deleted in the mini-program console: sends with it get 40037 from now on
        (grants residents gave for it are void with it)."""
        self.templates.pop(template_id, None)

    def login_code(self, appid: str, openid: str | None = None, unionid: str | None = None) -> str:
        """What ``wx.login()`` hands the mini-program for one user."""
        code = secrets.token_hex(16)
        self.codes[code] = _Code(appid, openid or "o" + secrets.token_urlsafe(20), unionid, time.time())
        return code

    def phone_code(self, appid: str, phone: str, country: str = "86") -> str:
        code = secrets.token_hex(16)
        self.phone_codes[code] = _PhoneCode(appid, phone, country, time.time())
        return code

    def subscribe(self, openid: str, template_id: str, accept: bool = True) -> None:
        if accept:
            self.grants[(openid, template_id)] = self.grants.get((openid, template_id), 0) + 1

    def fail(
        self, path: str, errcode: int, times: int = 1, openid: str | None = None, status: int = 200
    ) -> None:
        """The next ``times`` calls to ``path`` (for ``openid`` if given) answer ``errcode``; with a
        ``status`` other than 200, that HTTP status and a gateway's HTML page instead."""
        self.failures.append(
            {"path": path, "errcode": errcode, "times": times, "openid": openid, "status": status}
        )

    def delivered(self, openid: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["touser"] == openid]

    def sent_to(self, openid: str) -> list[dict[str, Any]]:
        """The calls made for ``openid``, failed ones included: ``{"template_id", "errcode"}``."""
        return [c for c in self.sends if c["touser"] == openid]

    # -- protocol ------------------------------------------------------------------------------

    def _count(self, path: str) -> None:
        self.calls[path] = self.calls.get(path, 0) + 1

    def _injected(self, path: str, openid: str | None = None) -> Response | None:
        for f in self.failures:
            if f["path"] == path and f["times"] > 0 and f["openid"] in (None, openid):
                f["times"] -= 1
                if f.get("status", 200) != 200:
                    return Response(
                        "<html><body>Service Unavailable</body></html>",
                        status_code=f["status"],
                        media_type="text/html",
                    )
                return _err(f["errcode"], "system error" if f["errcode"] == -1 else "injected failure")
        return None

    def _app_of_token(self, request: Request) -> str | None:
        tok = request.query_params.get("access_token", "")
        entry = self.tokens.get(tok)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    async def _token(self, request: Request) -> Response:
        self._count("token")
        q = request.query_params
        if q.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        appid = q.get("appid", "")
        if appid not in self.apps:
            return _err(40013, "invalid appid")
        if q.get("secret") != self.apps[appid]:
            return _err(40125, "invalid appsecret")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = (appid, time.time() + TOKEN_TTL_S)
        return JSONResponse({"access_token": token, "expires_in": TOKEN_TTL_S})

    async def _jscode2session(self, request: Request) -> Response:
        self._count("jscode2session")
        injected = self._injected("jscode2session")
        if injected is not None:
            return injected
        q = request.query_params
        appid = q.get("appid", "")
        if appid not in self.apps:
            return _err(40013, "invalid appid")
        if q.get("secret") != self.apps[appid]:
            return _err(40125, "invalid appsecret")
        if q.get("grant_type") != "authorization_code":
            return _err(40002, "invalid grant_type")
        c = self.codes.get(q.get("js_code", ""))
        if c is None or c.appid != appid or time.time() - c.issued > CODE_TTL_S:
            return _err(40029, "invalid code")
        if c.used:
            return _err(40163, "code been used")
        c.used = True
        body: dict[str, Any] = {
            "openid": c.openid,
            "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
        }
        if c.unionid:
            body["unionid"] = c.unionid
        return JSONResponse(body)

    async def _json(self, request: Request) -> dict[str, Any] | None:
        try:
            data = json.loads(await request.body())
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    async def _phone(self, request: Request) -> Response:
        self._count("getuserphonenumber")
        appid = self._app_of_token(request)
        if appid is None:
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        injected = self._injected("getuserphonenumber")
        if injected is not None:
            return injected
        data = await self._json(request)
        c = self.phone_codes.get(str((data or {}).get("code", "")))
        if c is None or c.appid != appid or time.time() - c.issued > CODE_TTL_S:
            return _err(40029, "invalid code")
        if c.used:
            return _err(40163, "code been used")
        c.used = True
        pure = c.phone
        return JSONResponse(
            {
                "errcode": 0,
                "errmsg": "ok",
                "phone_info": {
                    "phoneNumber": pure if c.country == "86" else f"+{c.country}{pure}",
                    "purePhoneNumber": pure,
                    "countryCode": c.country,
                    "watermark": {"timestamp": int(time.time()), "appid": appid},
                },
            }
        )

    async def _subscribe_send(self, request: Request) -> Response:
        self._count("subscribe_send")
        data = await self._json(request)
        response = self._subscribe_answer(self._app_of_token(request), data)
        body = json.loads(bytes(response.body)) if isinstance(response, JSONResponse) else {}
        self.sends.append(
            {
                "touser": str((data or {}).get("touser", "")),
                "template_id": str((data or {}).get("template_id", "")),
                "errcode": body.get("errcode", response.status_code),
                "at": time.time(),
            }
        )
        return response

    def _subscribe_answer(self, appid: str | None, data: dict[str, Any] | None) -> Response:
        if appid is None:
            return _err(40001, "invalid credential, access_token is invalid or not latest")
        if data is None:
            return _err(47001, "data format error")
        openid = str(data.get("touser", ""))
        injected = self._injected("subscribe_send", openid)
        if injected is not None:
            return injected
        if not openid.startswith("o"):
            return _err(40003, "invalid openid")
        tid = str(data.get("template_id", ""))
        keywords = self.templates.get(tid)
        if keywords is None:
            return _err(40037, "invalid template_id")
        payload = data.get("data")
        if not isinstance(payload, dict) or set(payload) != set(keywords):
            return _err(47003, "argument invalid! data keywords do not match the template")
        for kw, v in payload.items():
            value = v.get("value") if isinstance(v, dict) else None
            kind = kw.rstrip("0123456789")
            if not isinstance(value, str) or not value or len(value) > KEYWORD_LIMITS.get(kind, 20):
                return _err(47003, f"argument invalid! data.{kw}.value invalid")
        if self.grants.get((openid, tid), 0) <= 0:
            return _err(43101, "user refuse to accept the msg")
        self.grants[(openid, tid)] -= 1
        msgid = secrets.randbelow(10**18)
        self.messages.append(
            {
                "msgid": msgid,
                "appid": appid,
                "touser": openid,
                "template_id": tid,
                "data": payload,
                "page": data.get("page"),
                "at": time.time(),
            }
        )
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": msgid})

    # -- control ---------------------------------------------------------------------------------

    async def _c_login(self, request: Request) -> Response:
        d = await self._json(request) or {}
        code = self.login_code(str(d.get("appid", "")), d.get("openid"), d.get("unionid"))
        return JSONResponse({"code": code, "openid": self.codes[code].openid})

    async def _c_phone_code(self, request: Request) -> Response:
        d = await self._json(request) or {}
        return JSONResponse(
            {
                "code": self.phone_code(
                    str(d.get("appid", "")), str(d.get("phone", "")), str(d.get("country", "86"))
                )
            }
        )

    async def _c_subscribe(self, request: Request) -> Response:
        d = await self._json(request) or {}
        self.subscribe(str(d.get("openid", "")), str(d.get("template_id", "")), bool(d.get("accept", True)))
        return JSONResponse({"ok": True})

    async def _c_remove_template(self, request: Request) -> Response:
        d = await self._json(request) or {}
        self.remove_template(str(d.get("template_id", "")))
        return JSONResponse({"ok": True})

    async def _c_fail(self, request: Request) -> Response:
        d = await self._json(request) or {}
        self.fail(
            str(d.get("path", "")),
            int(d.get("errcode", -1)),
            int(d.get("times", 1)),
            d.get("openid"),
            int(d.get("status", 200)),
        )
        return JSONResponse({"ok": True})

    async def _c_expire(self, request: Request) -> Response:
        self.tokens.clear()
        return JSONResponse({"ok": True})

    async def _c_messages(self, request: Request) -> Response:
        return JSONResponse({"messages": self.delivered(request.query_params.get("openid", ""))})
