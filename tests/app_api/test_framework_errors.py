"""Bodies the framework itself cannot read get the same Chinese problem+json as everything else.

Found by the fuzz run: a JSON body that is not UTF-8, and malformed multipart, were answered with
FastAPI's and Starlette's English details ("There was an error parsing the body", "Invalid multipart
data.") under the code ``app.error``.
"""

from __future__ import annotations

import re

import httpx

from tests.conftest import LoginFn

CJK = re.compile(r"[\u4e00-\u9fff]")


def assert_chinese_bad_request(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "app.bad_request"
    assert CJK.search(body["title"]) and CJK.search(body["detail"])
    assert not re.search(r"[A-Za-z]{4,}", body["detail"].replace("UTF-8", "")), body["detail"]


async def test_a_json_body_that_is_not_utf8(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/sms-codes",
        content=b"\xeeq\xdd\x93\xc1\xba\x91",
        headers={"content-type": "application/json"},
    )
    assert_chinese_bad_request(r)


async def test_malformed_multipart(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    boundary = "56791795f9a50d9f093a9489078a0025"
    r = await client.post(
        "/api/v1/columns/gov_services/admin/catalogue/import",
        content=f"--{boundary}\r\nTrue--{boundary}--\r\n".encode(),
        headers={**admin, "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_chinese_bad_request(r)
