"""Tencent Cloud SMS sandbox: API 3.0 ``SendSms`` (version 2021-01-11) behind TC3-HMAC-SHA256.

The request is refused as Tencent Cloud refuses it: a bad signature (``AuthFailure.SignatureFailure``),
an unknown secret id, a stale timestamp, an unknown SdkAppId or sign, a template that is not
approved (``FailedOperation.TemplateIncorrectOrUnapproved``) or a parameter set that does not match
it (``FailedOperation.TemplateParamSetNotMatchApprovedTemplate``). Errors are HTTP 200 with
``Response.Error``, as the real API answers. Approved templates are kept with their console text
(``{1}``, ``{2}``...) so a delivered message reads as the phone would show it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app_api.platform.sms.sandbox import Delivered

_AUTH = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})$"
)
_SLOT = re.compile(r"\{(\d+)\}")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def tc3_signature(secret_key: str, *, date: str, service: str, string_to_sign: str) -> str:
    k = _hmac(_hmac(_hmac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


class TencentSmsSandbox:
    def __init__(
        self, *, secret_id: str, secret_key: str, app_id: str, sign: str, templates: dict[str, str]
    ) -> None:
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.app_id = app_id
        self.sign = sign
        self.templates = dict(templates)  # approved template id -> console text with {1}, {2}...
        self.delivered: list[Delivered] = []
        self.refused: list[str] = []
        self.app = Starlette(routes=[Route("/", self.handle, methods=["POST"])])

    def inbox(self, phone: str) -> list[Delivered]:
        return [d for d in self.delivered if d.phone == phone]

    def _error(self, code: str, message: str) -> JSONResponse:
        self.refused.append(code)
        return JSONResponse(
            {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}
        )

    def _verify(self, request: Request, body: bytes) -> str | None:
        """None when the request is signed by the known secret; else the error code."""
        h = request.headers
        m = _AUTH.match(h.get("authorization", ""))
        if m is None:
            return "AuthFailure.SignatureFailure"
        if m["id"] != self.secret_id:
            return "AuthFailure.SecretIdNotFound"
        try:
            ts = int(h.get("x-tc-timestamp", ""))
        except ValueError:
            return "AuthFailure.SignatureFailure"
        if abs(time.time() - ts) > 300:
            return "AuthFailure.SignatureExpire"
        if m["date"] != dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d") or m["service"] != "sms":
            return "AuthFailure.SignatureFailure"
        signed = m["signed"].split(";")
        if "content-type" not in signed or "host" not in signed:
            return "AuthFailure.SignatureFailure"
        canonical_headers = "".join(f"{name}:{h.get(name, '')}\n" for name in signed)
        canonical_request = "\n".join(
            [
                request.method,
                request.url.path,
                request.url.query if request.method == "GET" else "",
                canonical_headers,
                m["signed"],
                hashlib.sha256(body).hexdigest(),
            ]
        )
        string_to_sign = "\n".join(
            [
                "TC3-HMAC-SHA256",
                str(ts),
                f"{m['date']}/sms/tc3_request",
                hashlib.sha256(canonical_request.encode()).hexdigest(),
            ]
        )
        expected = tc3_signature(
            self.secret_key, date=m["date"], service="sms", string_to_sign=string_to_sign
        )
        return None if hmac.compare_digest(expected, m["sig"]) else "AuthFailure.SignatureFailure"

    async def handle(self, request: Request) -> JSONResponse:
        body = await request.body()
        problem = self._verify(request, body)
        if problem is not None:
            return self._error(problem, "The provided credentials could not be validated.")
        if (
            request.headers.get("x-tc-action") != "SendSms"
            or request.headers.get("x-tc-version") != "2021-01-11"
        ):
            return self._error("InvalidAction", "The action or version is not supported.")
        try:
            req: dict[str, Any] = json.loads(body)
        except ValueError:
            return self._error("InvalidParameter", "The request body is not JSON.")
        if req.get("SmsSdkAppId") != self.app_id:
            return self._error("InvalidParameterValue.SdkAppIdNotExist", "SdkAppId not exist.")
        if req.get("SignName") != self.sign:
            return self._error("FailedOperation.SignatureIncorrectOrUnapproved", "signature unapproved.")
        content = self.templates.get(str(req.get("TemplateId")))
        if content is None:
            return self._error("FailedOperation.TemplateIncorrectOrUnapproved", "template unapproved.")
        params = [str(p) for p in req.get("TemplateParamSet") or []]
        slots = {int(n) for n in _SLOT.findall(content)}
        if len(params) != len(slots):
            return self._error(
                "FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                "the number of template parameters does not match the approved template.",
            )
        text = f"【{self.sign}】" + _SLOT.sub(lambda s: params[int(s.group(1)) - 1], content)
        statuses = []
        for number in req.get("PhoneNumberSet") or []:
            phone = str(number).removeprefix("+86")
            self.delivered.append(Delivered(phone, str(req["TemplateId"]), params, text))
            statuses.append(
                {
                    "SerialNo": uuid.uuid4().hex,
                    "PhoneNumber": number,
                    "Fee": 1,
                    "SessionContext": "",
                    "Code": "Ok",
                    "Message": "send success",
                    "IsoCode": "CN",
                }
            )
        return JSONResponse({"Response": {"SendStatusSet": statuses, "RequestId": str(uuid.uuid4())}})
