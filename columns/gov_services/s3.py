"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, OSS/COS S3 endpoints) for uploaded
materials in production, over httpx with AWS Signature Version 4 (header auth, path-style URLs).

No SDK: the platform's rule is httpx for outbound HTTP, and the two calls needed (PUT and GET of
one object) do not justify boto3's size. The signer is checked against AWS's published example
(GET /test.txt, 2013-05-24) in the tests; ``columns.gov_services.sandbox.s3`` verifies the same
signatures on loopback in development.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from app_api.core.http import http_client

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = dt.timedelta(minutes=15)


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signature(
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    payload_sha256: str,
    secret_key: str,
    region: str,
    amz_date: str,
    service: str = "s3",
) -> tuple[str, str]:
    """(signature, signed header names) of a request; ``headers`` are the ones to sign."""
    names = sorted(h.lower() for h in headers)
    lowered = {k.lower(): " ".join(str(v).split()) for k, v in headers.items()}
    canonical_headers = "".join(f"{n}:{lowered[n]}\n" for n in names)
    signed = ";".join(names)
    pairs = sorted(
        (quote(k, safe="-_.~"), quote(v, safe="-_.~"))
        for k, _, v in (p.partition("=") for p in query.split("&") if p)
    )
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    canonical = "\n".join(
        [
            method.upper(),
            quote(path, safe="/-_.~"),
            canonical_query,
            canonical_headers,
            signed,
            payload_sha256,
        ]
    )
    day = amz_date[:8]
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), signed


def signed_headers(
    method: str,
    url: str,
    *,
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    parts = urlsplit(url)
    amz_date = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": parts.netloc, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
    sig, names = signature(
        method=method,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        payload_sha256=payload,
        secret_key=secret_key,
        region=region,
        amz_date=amz_date,
    )
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    headers["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={names}, Signature={sig}"
    )
    return headers


class S3Error(RuntimeError):
    pass


class S3Storage:
    """Objects ``<endpoint>/<bucket>/<prefix><key>``; contents are encrypted before they leave."""

    def __init__(
        self, *, endpoint: str, bucket: str, access_key: str, secret_key: str, region: str, prefix: str = ""
    ) -> None:
        self.base = endpoint.rstrip("/") + "/" + bucket
        self.access_key, self.secret_key, self.region, self.prefix = access_key, secret_key, region, prefix

    def _url(self, key: str) -> str:
        return f"{self.base}/{quote(self.prefix + key, safe='/-_.~')}"

    async def _request(self, method: str, key: str, body: bytes = b"") -> bytes:
        url = self._url(key)
        headers = signed_headers(
            method, url, body=body, access_key=self.access_key, secret_key=self.secret_key, region=self.region
        )
        resp = await http_client().request(method, url, content=body or None, headers=headers)
        if resp.status_code != 200:
            raise S3Error(f"S3 {method} {key}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.content

    async def put_raw(self, key: str, data: bytes) -> None:
        await self._request("PUT", key, data)

    async def get_raw(self, key: str) -> bytes:
        return await self._request("GET", key)
