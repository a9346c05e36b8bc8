"""Development: the api serves the WeChat and Alipay sandboxes itself (the embedded default)."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.asyncio


async def test_dev_wechat_sandbox_speaks_the_protocol(client: httpx.AsyncClient) -> None:
    from miniprogram_bridge.config import get_mp_settings

    s = get_mp_settings()
    r = await client.get(
        "/sandbox/wechat/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": s.wechat_app_id,
            "secret": s.wechat_app_secret.get_secret_value(),
        },
    )
    assert r.status_code == 200 and r.json()["expires_in"] == 7200
    bad = await client.get(
        "/sandbox/wechat/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": s.wechat_app_id, "secret": "wrong"},
    )
    assert bad.json()["errcode"] == 40125
    code = (await client.post("/sandbox/wechat/_sandbox/login", json={"appid": s.wechat_app_id})).json()[
        "code"
    ]
    r = await client.get(
        "/sandbox/wechat/sns/jscode2session",
        params={
            "appid": s.wechat_app_id,
            "secret": s.wechat_app_secret.get_secret_value(),
            "js_code": code,
            "grant_type": "authorization_code",
        },
    )
    assert r.json()["openid"].startswith("o") and r.json()["session_key"]


async def test_dev_alipay_sandbox_refuses_unsigned_requests(client: httpx.AsyncClient) -> None:
    from miniprogram_bridge.sandbox.dev import alipay_sandbox

    app_id = next(iter(alipay_sandbox.apps))
    r = await client.post(
        "/sandbox/alipay/gateway.do",
        params={
            "app_id": app_id,
            "method": "alipay.system.oauth.token",
            "sign_type": "RSA2",
            "sign": "AAAA",
            "code": "x",
            "grant_type": "authorization_code",
        },
    )
    assert r.status_code == 200 and '"sub_code":"isv.invalid-signature"' in r.text
