"""The admins' screen of third-party columns: the list, disabling (the column's tokens stop working and
home drops it), enabling, and a new client secret shown once.

HTTP tests send the forms as a browser would (bearer header instead of the cookie, so no CSRF field);
the browser test walks an admin disabling a column and resetting its secret."""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import httpx
import pytest

from tests.app_api.test_openplatform_oidc import Col, register, sign_in, userinfo
from tests.conftest import LoginFn
from tests.workbench.test_workbench import CHROMIUM, browser_page, log_in, shot, staff

PAGE = "/api/v1/workbench/admin/external-columns"


def idem() -> str:
    return secrets.token_urlsafe(18)


def shown_secret(html: str) -> str:
    m = re.search(r'id="client-secret">([^<]+)<', html)
    return m.group(1) if m else ""


async def token_ok(client: httpx.AsyncClient, col: Col, resident: dict[str, str]) -> bool:
    """Whether the column can sign the resident in with the secret it holds."""
    r = await client.post(
        "/api/v1/oidc/token",
        data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "x", "code_verifier": "y"},
        auth=col.auth,
    )
    # A known client with a bad code is invalid_grant; a bad secret is invalid_client.
    return bool(r.json().get("error") != "invalid_client")


def on_home(body: dict[str, Any], name: str) -> bool:
    return any(c.get("name") == name for cat in body["categories"] for c in cat["columns"])


async def test_the_list_disable_enable_and_a_secret_shown_once(
    client: httpx.AsyncClient, login: LoginFn
) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    resident = await login()
    signed = await sign_in(client, resident, col)
    page = await client.get(PAGE, headers=admin)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert f'data-id="{col.id}"' in page.text and col.client_id in page.text
    assert "client_secret_hash" not in page.text and col.secret not in page.text

    # Disable: the column's token is refused from its next use.
    r = await client.post(f"{PAGE}/{col.id}/enabled", headers=admin, data={"enabled": "0", "idem": idem()})
    assert r.status_code == 303 and r.headers["location"] == f"{PAGE}?done=disabled"
    assert (await userinfo(client, signed["access_token"])).status_code == 401
    listed = await client.get(r.headers["location"], headers=admin)
    assert "已停用，该栏目已从居民首页移除" in listed.text
    assert re.search(rf'data-id="{col.id}" data-enabled="0"', listed.text)
    r = await client.post(f"{PAGE}/{col.id}/enabled", headers=admin, data={"enabled": "1", "idem": idem()})
    assert r.status_code == 303 and r.headers["location"] == f"{PAGE}?done=enabled"

    # A new secret: on this answer only; a double submit rotates once; the old secret is refused.
    key = idem()
    first = await client.post(f"{PAGE}/{col.id}/client-secret", headers=admin, data={"idem": key})
    assert first.status_code == 200 and first.headers["cache-control"] == "no-store"
    secret = shown_secret(first.text)
    assert secret and secret != col.secret and "旧密钥已失效" in first.text
    again = await client.post(f"{PAGE}/{col.id}/client-secret", headers=admin, data={"idem": key})
    assert again.status_code == 303 and again.headers["location"] == f"{PAGE}?done=rotated"
    assert not await token_ok(client, col, resident)
    assert await token_ok(client, Col(col.id, col.client_id, secret), resident)
    # Nor does the list show it afterwards.
    assert secret not in (await client.get(PAGE, headers=admin)).text


async def test_bad_input_and_other_roles(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    col = await register(client, admin)
    r = await client.post(
        f"{PAGE}/{col.id}/enabled", headers=admin, data={"enabled": "maybe", "idem": idem()}
    )
    assert r.status_code == 422 and "请选择启用或停用" in r.text
    r = await client.post(f"{PAGE}/nope/client-secret", headers=admin, data={"idem": idem()})
    assert r.status_code == 404 and "未找到该第三方栏目" in r.text
    r = await client.post(f"{PAGE}/{col.id}/client-secret", headers=admin, data={"idem": "short"})
    assert r.status_code == 400
    reviewer = await login(roles=["reviewer"], department="市民政局")
    for method, url, data in (
        ("GET", PAGE, None),
        ("POST", f"{PAGE}/{col.id}/enabled", {"enabled": "0", "idem": idem()}),
        ("POST", f"{PAGE}/{col.id}/client-secret", {"idem": idem()}),
    ):
        r = await client.request(method, url, headers=reviewer, data=data)
        assert r.status_code == 403, (url, r.text)
    # Nothing changed: the column is enabled and its secret still works.
    resident = await login()
    assert await token_ok(client, col, resident)
    assert re.search(rf'data-id="{col.id}" data-enabled="1"', (await client.get(PAGE, headers=admin)).text)


@pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (make system-deps)")
async def test_browser_an_admin_disables_a_column_and_resets_its_secret(
    client: httpx.AsyncClient, login: LoginFn, live_url: str
) -> None:
    admin_api = await login(roles=["admin"])
    col = await register(client, admin_api)
    name = (await client.get("/api/v1/admin/external-columns", headers=admin_api)).json()["columns"]
    name = next(c["name"] for c in name if c["id"] == col.id)
    assert on_home((await client.get("/api/v1/home")).json(), name)
    phone, password = await staff(["admin"])
    async with browser_page(live_url) as page:
        await page.goto(PAGE)
        await log_in(page, client, phone, password)
        assert page.url == live_url + PAGE and await page.title() == "第三方栏目 · 我家亳州"
        row = page.locator(f"#external-columns tr[data-id='{col.id}']")
        async with page.expect_navigation():
            await row.get_by_role("button", name=f"停用{name}").click()
        assert "已停用" in await page.inner_text("#message")
        assert await row.get_attribute("data-enabled") == "0"
        for _ in range(50):  # the home is cached in memory for a moment after the change
            if not on_home((await client.get("/api/v1/home")).json(), name):
                break
            await asyncio.sleep(0.1)
        assert not on_home((await client.get("/api/v1/home")).json(), name)
        resident = await login()
        assert not await token_ok(client, col, resident)  # a disabled column is refused
        async with page.expect_navigation():
            await row.get_by_role("button", name=f"启用{name}").click()
        assert await row.get_attribute("data-enabled") == "1"
        assert await token_ok(client, col, resident)
        async with page.expect_navigation():
            await row.get_by_role("button", name=f"重置{name}的密钥").click()
        secret = await page.inner_text("#client-secret")
        assert secret and secret != col.secret
        await shot(page, "admin-external-columns")
        assert not await token_ok(client, col, resident)
        assert await token_ok(client, Col(col.id, col.client_id, secret), resident)
