"""A loopback S3 endpoint for development and tests: PUT and GET of objects, with AWS Signature
Version 4 verified as S3 does (:func:`columns.gov_services.s3.signature`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time

from fastapi import APIRouter, FastAPI, Request, Response

from columns.gov_services.s3 import ALGORITHM, MAX_SKEW, signature


def _parse_authorization(value: str) -> dict[str, str] | None:
    if not value.startswith(ALGORITHM + " "):
        return None
    fields = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    return fields if {"Credential", "SignedHeaders", "Signature"} <= set(fields) else None


def _error(code: str, status: int) -> Response:
    body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code></Error>'
    return Response(body, status_code=status, media_type="application/xml")


class S3Sandbox:
    """Objects in memory (``objects["<bucket>/<key>"]``), under one access key."""

    def __init__(self, *, access_key: str, secret_key: str, region: str) -> None:
        self.access_key, self.secret_key, self.region = access_key, secret_key, region
        self.objects: dict[str, bytes] = {}

    async def _verify(self, request: Request, body: bytes) -> Response | None:
        auth = _parse_authorization(request.headers.get("authorization", ""))
        if auth is None:
            return _error("AccessDenied", 403)
        cred = auth["Credential"].split("/")
        amz_date = request.headers.get("x-amz-date", "")
        if len(cred) != 5 or cred[0] != self.access_key or cred[2] != self.region or cred[1] != amz_date[:8]:
            return _error("InvalidAccessKeyId", 403)
        try:
            at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            return _error("AccessDenied", 403)
        if abs(dt.datetime.fromtimestamp(time.time(), dt.UTC) - at) > MAX_SKEW:
            return _error("RequestTimeTooSkewed", 403)
        payload = request.headers.get("x-amz-content-sha256", "")
        if payload != hashlib.sha256(body).hexdigest():
            return _error("XAmzContentSHA256Mismatch", 400)
        names = auth["SignedHeaders"].split(";")
        if "host" not in names:
            return _error("AccessDenied", 403)
        # The full path: the client signs the URL it calls, endpoint path included.
        want, _ = signature(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={n: request.headers.get(n, "") for n in names},
            payload_sha256=payload,
            secret_key=self.secret_key,
            region=self.region,
            amz_date=amz_date,
        )
        if not hmac.compare_digest(want, auth["Signature"]):
            return _error("SignatureDoesNotMatch", 403)
        return None

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.put("/{bucket}/{key:path}")
        async def put_object(bucket: str, key: str, request: Request) -> Response:
            body = await request.body()
            if (bad := await self._verify(request, body)) is not None:
                return bad
            self.objects[f"{bucket}/{key}"] = body
            etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
            return Response(status_code=200, headers={"etag": f'"{etag}"'})

        @router.get("/{bucket}/{key:path}")
        async def get_object(bucket: str, key: str, request: Request) -> Response:
            if (bad := await self._verify(request, b"")) is not None:
                return bad
            data = self.objects.get(f"{bucket}/{key}")
            if data is None:
                return _error("NoSuchKey", 404)
            return Response(data, media_type="application/octet-stream")

        return router

    def app(self) -> FastAPI:
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.include_router(self.router())
        return app
