"""Aliyun SMS sandbox: OpenAPI ``SendSms`` (version 2017-05-25) as the official SDK sends it, an RPC
call whose parameters travel in the query, signed with ACS3-HMAC-SHA256 (the SDK's default).

The sandbox rebuilds the canonical request from what arrived (method, path, sorted and encoded
query, the signed headers, the body's SHA-256) and refuses a mismatch as Aliyun does (HTTP 400,
``SignatureDoesNotMatch``); business refusals are HTTP 200 with a ``Code``: an unknown template
(``isv.SMS_TEMPLATE_ILLEGAL``), a sign that is not approved (``isv.SMS_SIGNATURE_ILLEGAL``), missing
or unexpected variables (``isv.TEMPLATE_MISSING_PARAMETERS``, ``isv.TEMPLATE_PARAMS_ILLEGAL``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app_api.platform.sms.sandbox import Delivered

ALGORITHM = "ACS3-HMAC-SHA256"
_AUTH = re.compile(
    r"^ACS3-HMAC-SHA256 Credential=(?P<ak>[^,]+),SignedHeaders=(?P<signed>[a-z0-9;._-]+),"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)
_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))


class AliyunSmsSandbox:
    def __init__(
        self, *, access_key_id: str, access_key_secret: str, sign: str, templates: dict[str, str]
    ) -> None:
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign = sign
        self.templates = dict(templates)  # template code -> console text with ${name}
        self.delivered: list[Delivered] = []
        self.refused: list[str] = []
        self.app = Starlette(routes=[Route("/", self.handle, methods=["POST", "GET"])])

    def inbox(self, phone: str) -> list[Delivered]:
        return [d for d in self.delivered if d.phone == phone]

    def _answer(self, code: str, message: str, status: int = 200, **extra: Any) -> JSONResponse:
        if code != "OK":
            self.refused.append(code)
        return JSONResponse(
            {"RequestId": str(uuid.uuid4()), "Code": code, "Message": message, **extra}, status_code=status
        )

    def _verify(self, request: Request, body: bytes, query: dict[str, str]) -> str | None:
        h = request.headers
        m = _AUTH.match(h.get("authorization", ""))
        if m is None:
            return "IncompleteSignature"
        if m["ak"] != self.access_key_id:
            return "InvalidAccessKeyId.NotFound"
        payload = hashlib.sha256(body).hexdigest()
        if h.get("x-acs-content-sha256") != payload:
            return "SignatureDoesNotMatch"
        try:
            sent_at = dt.datetime.strptime(h.get("x-acs-date", ""), "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            return "InvalidTimeStamp.Format"
        if abs((dt.datetime.now(dt.UTC) - sent_at).total_seconds()) > 900:
            return "InvalidTimeStamp.Expired"
        signed = m["signed"].split(";")
        if not {"host", "x-acs-action", "x-acs-date", "x-acs-content-sha256"} <= set(signed):
            return "IncompleteSignature"
        canonical_headers = "".join(f"{name}:{h.get(name, '').strip()}\n" for name in signed)
        canonical_request = "\n".join(
            [
                request.method,
                request.url.path or "/",
                canonical_query(query),
                canonical_headers,
                m["signed"],
                payload,
            ]
        )
        string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
        expected = hmac.new(
            self.access_key_secret.encode(), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        return None if hmac.compare_digest(expected, m["sig"]) else "SignatureDoesNotMatch"

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        query = dict(parse_qsl(request.url.query, keep_blank_values=True))
        problem = self._verify(request, body, query)
        if problem is not None:
            return self._answer(problem, "Specified signature does not match our calculation.", status=400)
        if (
            request.headers.get("x-acs-action") != "SendSms"
            or request.headers.get("x-acs-version") != "2017-05-25"
        ):
            return self._answer("InvalidAction.NotFound", "Specified api is not found.", status=404)
        if query.get("SignName") != self.sign:
            return self._answer("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
        code = query.get("TemplateCode", "")
        content = self.templates.get(code)
        if content is None:
            return self._answer("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
        try:
            given = json.loads(query.get("TemplateParam") or "{}")
        except ValueError:
            return self._answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        if not isinstance(given, dict) or not all(isinstance(v, str) for v in given.values()):
            return self._answer("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
        wanted = set(_VAR.findall(content))
        if wanted - set(given):
            return self._answer("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值")
        if set(given) - wanted:
            return self._answer("isv.TEMPLATE_PARAMS_ILLEGAL", "模板变量里包含非法关键字")
        text = f"【{self.sign}】" + _VAR.sub(lambda v: given[v.group(1)], content)
        for phone in query.get("PhoneNumbers", "").split(","):
            self.delivered.append(Delivered(phone, code, dict(given), text))
        return self._answer("OK", "OK", BizId=f"{uuid.uuid4().int % 10**18}^0")
