"""S3-compatible storage: the signer against AWS's published example, and uploads stored through the
loopback S3 sandbox over real HTTP (encrypted, signatures checked, tampering refused)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from columns.gov_services.s3 import EMPTY_SHA256, signature, signed_headers
from tests.columns.gov_services.conftest import API, SANDBOX, gov_sandbox, make_resident, new_application, pdf
from tests.conftest import LoginFn


def test_signature_matches_the_aws_example() -> None:
    # docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html, "GET Object".
    sig, names = signature(
        method="GET",
        path="/test.txt",
        query="",
        headers={
            "Host": "examplebucket.s3.amazonaws.com",
            "Range": "bytes=0-9",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
        payload_sha256=EMPTY_SHA256,
        secret_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region="us-east-1",
        amz_date="20130524T000000Z",
    )
    assert names == "host;range;x-amz-content-sha256;x-amz-date"
    assert sig == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"


async def test_uploads_go_to_s3_encrypted(
    app: Any,
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    live_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from columns.gov_services.config import get_config
    from columns.gov_services.storage import get_storage

    cfg = get_config()
    endpoint = f"{live_url}{SANDBOX}/s3"
    objects = gov_sandbox(app).state.s3.objects
    monkeypatch.setattr(cfg, "storage", "s3")
    monkeypatch.setattr(cfg, "s3_endpoint", endpoint)
    r = await make_resident(client, login, level=2)
    draft = await new_application(client, r, "BZ-MZ-001")
    resp = await client.post(
        f"{API}/applications/{draft['id']}/uploads",
        data={"material": "近期免冠彩色证件照片"},
        files={"file": ("scan.pdf", pdf(), "application/pdf")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    key = f"{draft['id']}/{resp.json()['id']}.pdf"
    stored = objects[f"{cfg.s3_bucket}/{cfg.s3_prefix}{key}"]
    assert stored and b"%PDF" not in stored
    assert await get_storage().get(key) == pdf()

    # The sandbox checks signatures as S3 does: a wrong secret, a stale date, a tampered body.
    url = f"{endpoint}/{cfg.s3_bucket}/{cfg.s3_prefix}{key}"
    async with httpx.AsyncClient() as raw:
        bad = signed_headers(
            "GET", url, body=b"", access_key=cfg.s3_access_key, secret_key="wrong", region=cfg.s3_region
        )
        assert (await raw.get(url, headers=bad)).status_code == 403
        old = signed_headers(
            "GET",
            url,
            body=b"",
            access_key=cfg.s3_access_key,
            secret_key=cfg.s3_secret_key.get_secret_value(),
            region=cfg.s3_region,
            now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
        )
        resp = await raw.get(url, headers=old)
        assert resp.status_code == 403 and b"RequestTimeTooSkewed" in resp.content
        put = signed_headers(
            "PUT",
            url,
            body=b"original",
            access_key=cfg.s3_access_key,
            secret_key=cfg.s3_secret_key.get_secret_value(),
            region=cfg.s3_region,
        )
        resp = await raw.put(url, headers=put, content=b"tampered")
        assert resp.status_code == 400
        assert objects[f"{cfg.s3_bucket}/{cfg.s3_prefix}{key}"] == stored
