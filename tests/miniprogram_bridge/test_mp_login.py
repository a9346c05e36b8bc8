"""Mini-program login and binding with wechatpy and the official Alipay SDK against the sandboxes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import select

from tests.conftest import LoginFn, new_phone, sms_code

pytestmark = pytest.mark.asyncio
API = "/api/v1"


def appid() -> str:
    from miniprogram_bridge.config import get_mp_settings

    return get_mp_settings().wechat_app_id


async def bindings(openid: str) -> list[Any]:
    from app_api.core.db import sessionmaker
    from miniprogram_bridge.models import MiniProgramBinding

    async with sessionmaker()() as s:
        return list(
            (await s.exec(select(MiniProgramBinding).where(MiniProgramBinding.openid == openid))).all()
        )


async def me(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    r = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    return r.json()


async def wechat_first_login(
    client: httpx.AsyncClient, sandbox: Any, openid: str | None = None
) -> tuple[str, str]:
    code = sandbox.login_code(appid(), openid)
    openid = sandbox.codes[code].openid
    r = await client.post(f"{API}/mp/wechat/login", json={"code": code})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "phone_required" and body["access_token"] is None
    return openid, body["bind_ticket"]


async def test_wechat_first_login_binds_phone_from_wechat_then_logs_in_directly(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    phone = new_phone()
    openid, ticket = await wechat_first_login(client, wechat_sandbox)
    r = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), phone)},
    )
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["status"] == "ok" and first["new_account"] is True
    assert "session_key" not in r.text
    account = await me(client, first["access_token"])
    assert account["phone"] == phone[:3] + "****" + phone[-4:]

    # Next time the same WeChat user is let straight in, to the same account.
    r = await client.post(f"{API}/mp/wechat/login", json={"code": wechat_sandbox.login_code(appid(), openid)})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert (await me(client, r.json()["access_token"]))["id"] == account["id"]
    assert r.json()["new_account"] is False

    # The session key is kept, encrypted: never in clear, never in an answer.
    [b] = await bindings(openid)
    assert b.account_id == account["id"] and b.session_key_enc
    from app_api.core.crypto import decrypt_str

    key = decrypt_str(b.session_key_enc, aad=f"mp_session_key:wechat:{openid}")
    assert len(key) == 24 and key.encode() not in b.session_key_enc
    listed = await client.get(
        f"{API}/mp/bindings", headers={"Authorization": f"Bearer {first['access_token']}"}
    )
    assert listed.json()["bindings"][0]["platform"] == "wechat"
    assert openid not in listed.text and key not in listed.text


async def test_bind_ticket_is_single_use(client: httpx.AsyncClient, wechat_sandbox: Any) -> None:
    _, ticket = await wechat_first_login(client, wechat_sandbox)
    ok = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), new_phone())},
    )
    assert ok.status_code == 200
    again = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), new_phone())},
    )
    assert again.status_code == 400 and again.json()["code"] == "mp.bind_ticket_invalid"


async def test_invalid_and_reused_codes_are_refused_clearly(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    r = await client.post(f"{API}/mp/wechat/login", json={"code": "not-a-real-code"})
    assert r.status_code == 400 and r.json()["code"] == "mp.code_invalid"
    assert r.json()["title"] == "登录凭证无效，请重新进入小程序"

    code = wechat_sandbox.login_code(appid())
    assert (await client.post(f"{API}/mp/wechat/login", json={"code": code})).status_code == 200
    r = await client.post(f"{API}/mp/wechat/login", json={"code": code})
    assert r.status_code == 400 and r.json()["code"] == "mp.code_used"

    r = await client.post(f"{API}/mp/wechat/login", json={"code": ""})
    assert r.status_code == 422


async def test_wechat_outage_is_a_clear_upstream_error_and_writes_nothing(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    code = wechat_sandbox.login_code(appid())
    openid = wechat_sandbox.codes[code].openid
    wechat_sandbox.fail("jscode2session", -1, times=1)
    r = await client.post(f"{API}/mp/wechat/login", json={"code": code})
    assert r.status_code == 502 and r.json()["code"] == "mp.wechat_unavailable"
    assert await bindings(openid) == []

    wechat_sandbox.fail("jscode2session", 45011, times=1)
    r = await client.post(f"{API}/mp/wechat/login", json={"code": wechat_sandbox.login_code(appid())})
    assert r.status_code == 429 and r.json()["code"] == "mp.wechat_rate_limited"


async def test_phone_code_refused_leaves_ticket_for_sms(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    phone = new_phone()
    _, ticket = await wechat_first_login(client, wechat_sandbox)
    r = await client.post(f"{API}/mp/wechat/phone", json={"bind_ticket": ticket, "phone_code": "forged-code"})
    assert r.status_code == 400 and r.json()["code"] == "mp.phone_code_invalid"

    # Foreign numbers are refused: accounts are keyed by mainland mobile numbers.
    foreign = wechat_sandbox.phone_code(appid(), "6591234567", country="65")
    r = await client.post(f"{API}/mp/wechat/phone", json={"bind_ticket": ticket, "phone_code": foreign})
    assert r.status_code == 422 and r.json()["code"] == "mp.phone_not_supported"

    # The SMS route still finishes the login with the same ticket.
    assert (await client.post(f"{API}/auth/sms-codes", json={"phone": phone})).status_code == 202
    wrong = await client.post(
        f"{API}/mp/phone/sms", json={"bind_ticket": ticket, "phone": phone, "code": "000000"}
    )
    assert wrong.status_code == 400 and wrong.json()["code"] == "auth.code_invalid"
    code = await sms_code(client, phone)
    r = await client.post(f"{API}/mp/phone/sms", json={"bind_ticket": ticket, "phone": phone, "code": code})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


async def test_expired_access_token_is_fetched_again(client: httpx.AsyncClient, wechat_sandbox: Any) -> None:
    _, ticket = await wechat_first_login(client, wechat_sandbox)
    wechat_sandbox.tokens.clear()  # WeChat retired our access token
    before = wechat_sandbox.calls.get("token", 0)
    r = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), new_phone())},
    )
    assert r.status_code == 200, r.text
    assert wechat_sandbox.calls["token"] == before + 1


async def test_existing_resident_keeps_account_and_openid_bound_elsewhere_is_refused(
    client: httpx.AsyncClient, wechat_sandbox: Any, login: LoginFn
) -> None:
    phone_a = new_phone()
    headers_a = await login(phone_a)  # registered in the app first
    id_a = (await client.get(f"{API}/me", headers=headers_a)).json()["id"]
    openid, ticket = await wechat_first_login(client, wechat_sandbox)
    r = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), phone_a)},
    )
    assert r.status_code == 200 and r.json()["new_account"] is False
    assert (await me(client, r.json()["access_token"]))["id"] == id_a

    # Resident B, logged in by SMS, tries to link the WeChat user that belongs to A.
    headers_b = await login(new_phone())
    r = await client.post(
        f"{API}/mp/wechat/bind", headers=headers_b, json={"code": wechat_sandbox.login_code(appid(), openid)}
    )
    assert r.status_code == 409 and r.json()["code"] == "mp.openid_bound_elsewhere"
    [b] = await bindings(openid)
    assert b.account_id == id_a

    # A linking a second WeChat user to the same account is refused too.
    r = await client.post(
        f"{API}/mp/wechat/bind", headers=headers_a, json={"code": wechat_sandbox.login_code(appid())}
    )
    assert r.status_code == 409 and r.json()["code"] == "mp.account_already_bound"

    # After A unbinds, B may link it.
    assert (await client.delete(f"{API}/mp/bindings/wechat", headers=headers_a)).json() == {"unbound": True}
    r = await client.post(
        f"{API}/mp/wechat/bind", headers=headers_b, json={"code": wechat_sandbox.login_code(appid(), openid)}
    )
    assert r.status_code == 200, r.text


async def test_two_tickets_for_one_openid_cannot_bind_two_accounts(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    openid, t1 = await wechat_first_login(client, wechat_sandbox)
    _, t2 = await wechat_first_login(client, wechat_sandbox, openid)
    r1 = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": t1, "phone_code": wechat_sandbox.phone_code(appid(), new_phone())},
    )
    assert r1.status_code == 200
    r2 = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": t2, "phone_code": wechat_sandbox.phone_code(appid(), new_phone())},
    )
    assert r2.status_code == 409 and r2.json()["code"] == "mp.openid_bound_elsewhere"


async def test_staff_cannot_log_in_through_the_mini_program(
    client: httpx.AsyncClient, wechat_sandbox: Any, login: LoginFn
) -> None:
    phone = new_phone()
    await login(phone, roles=["reviewer"])
    _, ticket = await wechat_first_login(client, wechat_sandbox)
    r = await client.post(
        f"{API}/mp/wechat/phone",
        json={"bind_ticket": ticket, "phone_code": wechat_sandbox.phone_code(appid(), phone)},
    )
    assert r.status_code == 403 and r.json()["code"] == "mp.staff_not_allowed"


def alipay_code(sandbox: Any, open_id: str | None = None) -> str:
    return sandbox.auth_code(sandbox.client_app.app_id, open_id)


async def test_alipay_first_login_by_sms_then_direct(client: httpx.AsyncClient, alipay_sandbox: Any) -> None:
    phone = new_phone()
    code = alipay_code(alipay_sandbox)
    open_id = alipay_sandbox.codes[code].open_id
    r = await client.post(f"{API}/mp/alipay/login", json={"auth_code": code})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "phone_required"
    ticket = r.json()["bind_ticket"]
    await client.post(f"{API}/auth/sms-codes", json={"phone": phone})
    sms = await sms_code(client, phone)
    r = await client.post(f"{API}/mp/phone/sms", json={"bind_ticket": ticket, "phone": phone, "code": sms})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    account_id = (await me(client, r.json()["access_token"]))["id"]

    r = await client.post(f"{API}/mp/alipay/login", json={"auth_code": alipay_code(alipay_sandbox, open_id)})
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert (await me(client, r.json()["access_token"]))["id"] == account_id
    [b] = await bindings(open_id)
    assert b.platform == "alipay" and b.account_id == account_id


async def test_alipay_reused_code_and_forged_answer_are_refused(
    client: httpx.AsyncClient, alipay_sandbox: Any
) -> None:
    code = alipay_code(alipay_sandbox)
    assert (await client.post(f"{API}/mp/alipay/login", json={"auth_code": code})).status_code == 200
    r = await client.post(f"{API}/mp/alipay/login", json={"auth_code": code})
    assert r.status_code == 400 and r.json()["code"] == "mp.code_invalid"
    assert alipay_sandbox.rejected[-1] == "isv.code-invalid"

    # An answer not signed by Alipay's key is not believed.
    code = alipay_code(alipay_sandbox)
    open_id = alipay_sandbox.codes[code].open_id
    alipay_sandbox.sign_with_wrong_key = True
    try:
        r = await client.post(f"{API}/mp/alipay/login", json={"auth_code": code})
    finally:
        alipay_sandbox.sign_with_wrong_key = False
    assert r.status_code == 502 and r.json()["code"] == "mp.alipay_unavailable"
    assert r.json()["reason"] == "signature"
    assert await bindings(open_id) == []


async def test_alipay_request_signed_with_another_key_is_refused_by_the_gateway(
    client: httpx.AsyncClient, alipay_sandbox: Any
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from miniprogram_bridge import alipay
    from miniprogram_bridge.sandbox.alipay import _pkcs1

    real = alipay_sandbox.client_app.key
    alipay_sandbox.client_app.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    try:
        r = await client.post(f"{API}/mp/alipay/login", json={"auth_code": alipay_code(alipay_sandbox)})
    finally:
        alipay_sandbox.client_app.key = real
    assert r.status_code == 502 and r.json()["alipay_sub_code"] == "isv.invalid-signature"
    assert _pkcs1(real).startswith("-----BEGIN RSA PRIVATE KEY-----")
    alipay.reset()


async def test_unionid_known_from_another_app_logs_straight_in(
    client: httpx.AsyncClient, wechat_sandbox: Any, login: LoginFn
) -> None:
    from app_api.core.db import session_scope
    from miniprogram_bridge.models import MiniProgramBinding

    headers = await login(new_phone())
    account_id = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    unionid = "u" + new_phone()
    async with session_scope() as s:  # the same person, bound through the city's other app
        s.add(
            MiniProgramBinding(
                platform="wechat",
                app_id="wx-city-official-account",
                openid="o-other",
                unionid=unionid,
                account_id=account_id,
            )
        )
    code = wechat_sandbox.login_code(appid(), unionid=unionid)
    r = await client.post(f"{API}/mp/wechat/login", json={"code": code})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert (await me(client, r.json()["access_token"]))["id"] == account_id
