"""Login by SMS code: limits, rotation, reuse detection, logout, staff passwords."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import LoginFn, new_phone, sms_code

pytestmark = pytest.mark.asyncio


async def clear_cooldown(phone: str) -> None:
    from app_api.core.redis import get_redis

    await (await get_redis()).delete(f"sms:cool:{phone}")


async def request_code(client: httpx.AsyncClient, phone: str) -> httpx.Response:
    return await client.post("/api/v1/auth/sms-codes", json={"phone": phone})


async def test_first_login_creates_resident_and_me_masks_phone(client: httpx.AsyncClient, phone: str) -> None:
    assert (await request_code(client, phone)).status_code == 202
    code = await sms_code(client, phone)
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 200
    tokens = r.json()
    assert tokens["token_type"] == "bearer" and tokens["refresh_token"]
    me = (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).json()
    assert me["phone"] == phone[:3] + "****" + phone[-4:]
    assert me["roles"] == ["resident"]
    assert me["identity_level"] == 1


async def test_code_is_single_use(client: httpx.AsyncClient, phone: str) -> None:
    await request_code(client, phone)
    code = await sms_code(client, phone)
    assert (await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})).status_code == 200
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 400
    assert r.json()["code"] == "auth.code_invalid"


async def test_resend_cooldown(client: httpx.AsyncClient, phone: str) -> None:
    assert (await request_code(client, phone)).status_code == 202
    r = await request_code(client, phone)
    assert r.status_code == 429
    body = r.json()
    assert body["code"] == "auth.sms_cooldown"
    assert r.headers["content-type"].startswith("application/problem+json")
    assert 0 < body["retry_after"] <= 60
    assert int(r.headers["retry-after"]) == body["retry_after"]


async def test_zero_cooldown_means_no_cooldown(client: httpx.AsyncClient, phone: str) -> None:
    """``WOJIA_SMS_RESEND_COOLDOWN_S=0`` answered 500 to every code request (Redis refuses EX 0)."""
    from app_api.core.settings import get_settings

    s = get_settings()
    old = s.sms_resend_cooldown_s
    s.sms_resend_cooldown_s = 0
    try:
        first = await request_code(client, phone)
        second = await request_code(client, phone)
    finally:
        s.sms_resend_cooldown_s = old
    assert first.status_code == 202, first.text
    assert first.json()["resend_after"] == 0
    assert second.status_code == 202, second.text
    # The second code replaced the first: only the newest one logs in.
    code = await sms_code(client, phone)
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text


async def test_five_wrong_codes_lock_for_fifteen_minutes(client: httpx.AsyncClient, phone: str) -> None:
    await request_code(client, phone)
    code = await sms_code(client, phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for i in range(4):
        r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": wrong})
        assert r.status_code == 400 and r.json()["tries_left"] == 4 - i
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": wrong})
    assert r.status_code == 429 and r.json()["code"] == "auth.locked"
    # Even the right code is refused while locked, and no new code can be requested.
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 429 and r.json()["code"] == "auth.locked"
    r = await request_code(client, phone)
    assert r.status_code == 429 and r.json()["code"] == "auth.locked"
    assert 14 * 60 < r.json()["retry_after"] <= 15 * 60


async def test_per_ip_limit(client: httpx.AsyncClient, app: object) -> None:
    from app_api.core.settings import get_settings

    s = get_settings()
    old = s.sms_per_ip_per_hour
    from app_api.core.redis import get_redis

    r = await get_redis()
    await r.delete("sms:ip:127.0.0.1")
    s.sms_per_ip_per_hour = 3
    try:
        statuses = [(await request_code(client, new_phone())).status_code for _ in range(4)]
    finally:
        s.sms_per_ip_per_hour = old
        await r.delete("sms:ip:127.0.0.1")
    assert statuses == [202, 202, 202, 429]


async def test_refresh_rotates_and_reuse_revokes_family(client: httpx.AsyncClient, phone: str) -> None:
    await request_code(client, phone)
    tokens = (
        await client.post("/api/v1/auth/login", json={"phone": phone, "code": await sms_code(client, phone)})
    ).json()
    r1 = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r1.status_code == 200
    new = r1.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    # The new access token works.
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    ).status_code == 200
    # The spent refresh token comes back: the whole family is revoked.
    r2 = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r2.status_code == 401 and r2.json()["code"] == "auth.refresh_reused"
    r3 = await client.post("/api/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert r3.status_code == 401
    r4 = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new['access_token']}"})
    assert r4.status_code == 401 and r4.json()["code"] == "auth.token_invalid"


async def test_logout_revokes_access_and_refresh(client: httpx.AsyncClient, phone: str) -> None:
    await request_code(client, phone)
    tokens = (
        await client.post("/api/v1/auth/login", json={"phone": phone, "code": await sms_code(client, phone)})
    ).json()
    h = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.post("/api/v1/auth/logout", headers=h)).status_code == 204
    assert (await client.get("/api/v1/me", headers=h)).status_code == 401
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_forged_and_expired_tokens(client: httpx.AsyncClient, phone: str) -> None:
    import datetime as dt

    import jwt

    forged = jwt.encode(
        {"sub": "x", "fam": "y", "iss": "wojia", "exp": 9999999999}, "not-the-key", algorithm="HS256"
    )
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and r.json()["code"] == "auth.token_invalid"
    from app_api.core.settings import get_settings

    expired = jwt.encode(
        {"sub": "x", "fam": "y", "iss": "wojia", "exp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)},
        get_settings().secret_key.get_secret_value(),
        algorithm="HS256",
    )
    r = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["code"] == "auth.token_expired"
    r = await client.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "auth.unauthorized"
    assert r.json()["title"] == "请先登录"


async def test_staff_need_password_and_code(client: httpx.AsyncClient, login: LoginFn) -> None:
    phone = new_phone()
    h = await login(phone=phone, roles=["finance"])
    me = (await client.get("/api/v1/me", headers=h)).json()
    assert me["roles"] == ["finance"]
    # The resident SMS login is refused for a staff account.
    await clear_cooldown(phone)
    await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": await sms_code(client, phone)})
    assert r.status_code == 403 and r.json()["code"] == "auth.password_required"


async def test_staff_wrong_password(client: httpx.AsyncClient, login: LoginFn) -> None:
    phone = new_phone()
    await login(phone=phone, roles=["admin"])
    await clear_cooldown(phone)
    await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    code = await sms_code(client, phone)
    r = await client.post(
        "/api/v1/auth/staff/login", json={"phone": phone, "code": code, "password": "wrong-password"}
    )
    assert r.status_code == 401 and r.json()["code"] == "auth.bad_credentials"
    assert r.json()["title"] == "账号或密码错误"


async def test_bad_phone_and_malformed_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": "12345"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "app.validation_failed" and body["errors"][0]["loc"][-1] == "phone"
    assert body["title"] == "提交的信息有误，请检查后重试"
    r = await client.post(
        "/api/v1/auth/sms-codes", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["code"] == "app.bad_request"
    r = await client.post("/api/v1/auth/login", json={"phone": 13800000000, "code": ["1"]})
    assert r.status_code == 422


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/sms-codes",
        content=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["code"] == "app.payload_too_large"


async def test_elderly_mode_setting(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login()
    r = await client.patch("/api/v1/me", json={"elderly_mode": True}, headers=h)
    assert r.status_code == 200 and r.json()["elderly_mode"] is True
    home = (await client.get("/api/v1/home", headers=h)).json()
    assert home["mode"] == "elderly"
