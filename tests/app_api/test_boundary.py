"""Control characters in any text input are refused at the boundary with a 422, on both backends.

The probes are those of issue 14 (a NUL reached PostgreSQL and came back as a 500); each test
also checks that nothing was written and that ordinary text, tabs, line breaks, emoji and binary
file contents still go through.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.columns.gov_services.conftest import API, Resident, make_resident, new_application, pdf
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"
PHOTO = "近期免冠彩色证件照片"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def catalogue(app: Any) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store

    async with session_scope() as s:
        await catalogue_store.seed(s)


def refused(r: httpx.Response, loc: list[str]) -> dict[str, Any]:
    """The 422 a resident sees: Chinese title, a stable code, and where the character was."""
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["code"] == "app.invalid_characters"
    assert body["title"] == "提交的内容含有不允许的字符"
    assert any(e["loc"] == loc and e["type"] == "invalid_character" for e in body["errors"]), body
    assert "控制字符" in body["detail"] or "无效的字符" in body["detail"]
    return body


def multipart(*parts: tuple[bytes, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart body written byte by byte (clients percent-encode control characters in names;
    a hostile client need not)."""
    boundary = f"wojia{uuid.uuid4().hex}".encode()
    body = b""
    for disposition, data in parts:
        body += b"--" + boundary + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        body += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    body += b"--" + boundary + b"--\r\n"
    return body, {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


# ---------------------------------------------------------------- query strings and paths


@pytest.mark.parametrize("value", ["a%00b", "a%01", "%7F", "%C2%85", "a%1Bb"])
async def test_control_characters_in_a_query_string_are_refused(
    client: httpx.AsyncClient, value: str
) -> None:
    r = await client.get(f"/api/v1/stations?city={value}")
    body = refused(r, ["query", "city"])
    assert body["errors"][0]["msg"].startswith("city ")


async def test_a_control_character_in_a_query_parameter_name_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/stations?ci%00ty=x")
    body = refused(r, ["query", "ci\x00ty"])
    assert "\x00" not in body["detail"]  # the name is not echoed into the message


async def test_ordinary_query_strings_still_work(client: httpx.AsyncClient) -> None:
    for query in ("city=亳州", "city=%E4%BA%B3%E5%B7%9E", "city=a%09b", "city=a+b%0Ac", "kind=village&city="):
        r = await client.get(f"/api/v1/stations?{query}")
        assert r.status_code == 200, (query, r.text)


async def test_a_nul_in_a_path_is_refused(client: httpx.AsyncClient, login: LoginFn) -> None:
    refused(await client.get(f"{API}/items/%00"), ["path"])
    headers = await login()
    r = await client.get(f"{API}/applications/%00", headers=headers)
    refused(r, ["path"])
    refused(await client.get(f"{API}/items/BZ%C2%9F"), ["path"])


# ---------------------------------------------------------------- JSON bodies


async def _my_applications(client: httpx.AsyncClient, r: Resident) -> list[dict[str, Any]]:
    resp = await client.get(f"{API}/applications", headers=r.headers)
    assert resp.status_code == 200, resp.text
    apps: list[dict[str, Any]] = resp.json()["applications"]
    return apps


async def test_a_nul_in_an_application_body_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, login: LoginFn, catalogue: None
) -> None:
    r = await make_resident(client, login)
    resp = await client.post(
        f"{API}/applications",
        json={"item_code": OLD_AGE + "\x00", "client_key": uuid.uuid4().hex},
        headers=r.headers,
    )
    body = refused(resp, ["body", "item_code"])
    assert body["errors"][0]["msg"] == "item_code 含有不允许的控制字符（U+0000）"
    # The escape written by hand, as a raw client would, in the client key this time.
    raw = '{"item_code": "' + OLD_AGE + '", "client_key": "abcdefgh\\u0000ij"}'
    resp = await client.post(
        f"{API}/applications", content=raw, headers={**r.headers, "content-type": "application/json"}
    )
    refused(resp, ["body", "client_key"])
    assert await _my_applications(client, r) == []


async def test_control_characters_deep_in_json_keys_and_values_are_refused(
    client: httpx.AsyncClient, login: LoginFn, catalogue: None
) -> None:
    r = await make_resident(client, login)
    app = await new_application(client, r, OLD_AGE)
    submit = f"{API}/applications/{app['id']}/submit"
    address = {"name": "张\u0085建国", "phone": "13800000001", "address": "安徽省亳州市谯城区魏武大道88号"}
    resp = await client.post(submit, json={"delivery": "免费邮寄", "address": address}, headers=r.headers)
    refused(resp, ["body", "address", "name"])
    resp = await client.post(submit, json={"delivery": "免费邮寄", "add\x7fress": {}}, headers=r.headers)
    refused(resp, ["body", "add\x7fress"])
    # A lone surrogate cannot be stored in PostgreSQL (nor encoded as UTF-8) at all.
    lone = '{"delivery": "\\ud800", "address": null}'
    resp = await client.post(submit, content=lone, headers={**r.headers, "content-type": "application/json"})
    body = refused(resp, ["body", "delivery"])
    assert "U+D800" in body["detail"]
    assert (await client.get(f"{API}/applications/{app['id']}", headers=r.headers)).json()[
        "status"
    ] == "draft"


async def test_ordinary_json_text_with_line_breaks_tabs_and_emoji_still_works(
    client: httpx.AsyncClient, login: LoginFn, catalogue: None
) -> None:
    r = await make_resident(client, login)
    # json.dumps escapes every non-ASCII character (\\u4e2d, a surrogate pair for the emoji).
    key = "行一\n\t行二😀" + uuid.uuid4().hex[:8]
    raw = json.dumps({"item_code": OLD_AGE, "client_key": key})
    assert "\\ud83d\\ude00" in raw
    resp = await client.post(
        f"{API}/applications", content=raw, headers={**r.headers, "content-type": "application/json"}
    )
    assert resp.status_code == 201, resp.text
    # A literal backslash followed by "u0000" is text, not a NUL.
    raw = json.dumps({"item_code": OLD_AGE, "client_key": "path\\u0000" + uuid.uuid4().hex[:8]})
    resp = await client.post(
        f"{API}/applications", content=raw, headers={**r.headers, "content-type": "application/json"}
    )
    assert resp.status_code == 201, resp.text


async def test_broken_json_is_still_a_400_not_a_422(client: httpx.AsyncClient, login: LoginFn) -> None:
    headers = await login()
    resp = await client.post(
        f"{API}/applications",
        content=b'{"item_code": "a\x00',
        headers={**headers, "content-type": "application/json"},
    )
    assert resp.status_code == 400 and resp.json()["code"] == "app.bad_request", resp.text


# ---------------------------------------------------------------- forms and uploads


async def test_an_upload_named_with_a_nul_is_refused_and_not_stored(
    client: httpx.AsyncClient, login: LoginFn, catalogue: None
) -> None:
    r = await make_resident(client, login)
    app = await new_application(client, r, OLD_AGE)
    url = f"{API}/applications/{app['id']}/uploads"
    content, headers = multipart(
        (b'name="material"', PHOTO.encode()), (b'name="file"; filename="a\x00.pdf"', pdf())
    )
    body = refused(
        await client.post(url, content=content, headers={**r.headers, **headers}),
        ["body", "file", "filename"],
    )
    assert body["errors"][0]["msg"] == "文件名 含有不允许的控制字符（U+0000）"
    content, headers = multipart(
        (b'name="material"', "照片\x00".encode()), (b'name="file"; filename="a.pdf"', pdf())
    )
    refused(await client.post(url, content=content, headers={**r.headers, **headers}), ["body", "material"])
    content, headers = multipart(
        (b'name="material"', PHOTO.encode()), ('name="file"; filename="a\u009b.pdf"'.encode(), pdf())
    )
    refused(
        await client.post(url, content=content, headers={**r.headers, **headers}),
        ["body", "file", "filename"],
    )
    uploads = (await client.get(f"{API}/applications/{app['id']}", headers=r.headers)).json()["uploads"]
    assert uploads == []


async def test_file_contents_are_bytes_and_are_left_alone(
    client: httpx.AsyncClient, login: LoginFn, catalogue: None
) -> None:
    r = await make_resident(client, login)
    app = await new_application(client, r, OLD_AGE)
    data = pdf().replace(b"%%EOF", b"\x00\x01\x7f\xc2\x85 %%EOF")
    assert b"\x00" in data
    resp = await client.post(
        f"{API}/applications/{app['id']}/uploads",
        data={"material": PHOTO},
        files={"file": ("证件照.pdf", data, "application/pdf")},
        headers=r.headers,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["size"] == len(data)


async def test_a_control_character_in_an_urlencoded_form_is_refused(client: httpx.AsyncClient) -> None:
    # The staff console's login form (application/x-www-form-urlencoded).
    resp = await client.post(
        "/api/v1/console/login",
        content=b"phone=139%0000000000&action=send&next=%2Fapi%2Fv1%2Fconsole",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    refused(resp, ["body", "phone"])


# ---------------------------------------------------------------- cost


def test_a_json_body_without_suspect_bytes_is_not_parsed_a_second_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app_api.core import input_guard

    parsed: list[bytes] = []
    real_loads = json.loads

    def counting_loads(data: bytes) -> Any:
        parsed.append(data)
        return real_loads(data)

    monkeypatch.setattr(json, "loads", counting_loads)  # the module the guard parses with
    ordinary = json.dumps({"name": "张建国", "note": "第一行\n第二行\t完", "tags": ["😀", "中文"]}).encode()
    assert input_guard.json_problems(ordinary) == []
    assert input_guard.json_problems('{"name": "张建国"}'.encode()) == []
    assert parsed == []
    assert input_guard.json_problems(b'{"name": "\\u0000"}') != []
    assert len(parsed) == 1


async def test_a_body_cut_short_by_a_disconnect_never_reaches_a_route(
    app: Any, client: httpx.AsyncClient
) -> None:
    from tests.conftest import new_phone

    phone = new_phone()
    body = json.dumps({"phone": phone}).encode()
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/auth/sms-codes",
        "raw_path": b"/api/v1/auth/sms-codes",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert sent == []  # nobody to answer
    r = await client.get("/api/v1/dev/sms", params={"phone": phone})
    assert r.status_code == 200 and r.json()["messages"] == []
