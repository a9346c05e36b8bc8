"""WeChat subscription messages as a notification channel, with SMS as the fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from app_api.core.db import session_scope, sessionmaker
from app_api.platform import notify
from tests.conftest import new_phone

pytestmark = pytest.mark.asyncio
API = "/api/v1"

notify.register_template(
    "test.status_changed",
    "您申请的“$item”$status。",
    wechat_fields={"thing1": "$item", "phrase2": "$status", "time3": "$at"},
)
PARAMS = {
    "item": "城乡居民基本医疗保险参保登记（含新生儿、学生）",
    "status": "已办结",
    "at": "2026-11-22 10:00",
}


async def wechat_resident(client: httpx.AsyncClient, sandbox: Any) -> tuple[dict[str, str], str, str, str]:
    from miniprogram_bridge.config import get_mp_settings

    appid = get_mp_settings().wechat_app_id
    phone = new_phone()
    code = sandbox.login_code(appid)
    openid = sandbox.codes[code].openid
    ticket = (await client.post(f"{API}/mp/wechat/login", json={"code": code})).json()["bind_ticket"]
    r = await client.post(
        f"{API}/mp/wechat/phone", json={"bind_ticket": ticket, "phone_code": sandbox.phone_code(appid, phone)}
    )
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    account = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    r = await client.patch(
        f"{API}/me/notification-settings", headers=headers, json={"quiet_hours_enabled": False}
    )
    assert r.status_code == 200
    return headers, account, openid, phone


async def send(account: str) -> str:
    async with session_scope() as s:
        return (await notify.send(s, account_id=account, template="test.status_changed", params=PARAMS)).id


async def settled(nid: str) -> notify.Notification:
    for _ in range(250):
        async with sessionmaker()() as s:
            n = await s.get(notify.Notification, nid)
        assert n is not None
        if n.status != "pending" and n.claimed_until is None:
            return n
        await asyncio.sleep(0.02)
    raise AssertionError("not settled")


async def sms_texts(phone: str) -> list[str]:
    from app_api.platform.sms import SandboxSms

    return [m["text"] for m in await SandboxSms().inbox(phone) if m["template"] == "test.status_changed"]


async def test_subscribed_resident_gets_wechat_message_then_sms_when_grant_used(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    from tests.miniprogram_bridge.conftest import TEMPLATE_ID

    headers, account, openid, phone = await wechat_resident(client, wechat_sandbox)
    tpl = (await client.get(f"{API}/mp/wechat/subscribe-templates", headers=headers)).json()["templates"]
    assert {"event": "test.status_changed", "template_id": TEMPLATE_ID, "category": "test"} in tpl

    # The resident taps "allow" once in wx.requestSubscribeMessage; the mini-program reports it.
    wechat_sandbox.subscribe(openid, TEMPLATE_ID)
    r = await client.post(
        f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {TEMPLATE_ID: "accept"}}
    )
    assert r.json()["subscriptions"] == [{"event": "test.status_changed", "remaining": 1, "refused": False}]

    first = await settled(await send(account))
    assert first.status == "sent" and first.channel == "wechat"
    [msg] = wechat_sandbox.delivered(openid)
    # WeChat caps thing.* at 20 characters: the long item name is cut rather than refused.
    assert msg["data"]["thing1"]["value"] == "城乡居民基本医疗保险参保登记（含新生儿…"
    assert msg["data"]["phrase2"]["value"] == "已办结"
    assert await sms_texts(phone) == []

    # The one-time grant is used up: the next message goes by SMS.
    second = await settled(await send(account))
    assert second.status == "sent" and second.channel == "sms"
    assert len(wechat_sandbox.delivered(openid)) == 1
    assert len(await sms_texts(phone)) == 1
    st = (await client.get(f"{API}/me/notification-settings", headers=headers)).json()
    assert st["subscriptions"] == [
        {"channel": "wechat", "template": "test.status_changed", "remaining": 0, "refused": False}
    ]


async def test_wechat_refusal_falls_back_to_sms_in_the_same_run(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    from tests.miniprogram_bridge.conftest import TEMPLATE_ID

    headers, account, openid, phone = await wechat_resident(client, wechat_sandbox)
    # The mini-program says "accept", but WeChat holds no grant (the user revoked it in settings).
    await client.post(
        f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {TEMPLATE_ID: "accept"}}
    )
    n = await settled(await send(account))
    assert n.status == "sent" and n.channel == "sms" and n.attempts == 1
    assert wechat_sandbox.delivered(openid) == []
    assert len(await sms_texts(phone)) == 1
    st = (await client.get(f"{API}/me/notification-settings", headers=headers)).json()
    assert st["subscriptions"][0]["remaining"] == 0


async def test_wechat_outage_twice_then_success_delivers_once(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    from tests.miniprogram_bridge.conftest import TEMPLATE_ID

    s = notify.get_notify_settings()
    before = list(s.retry_backoff_s)
    s.retry_backoff_s = [0]
    try:
        headers, account, openid, phone = await wechat_resident(client, wechat_sandbox)
        wechat_sandbox.subscribe(openid, TEMPLATE_ID)
        await client.post(
            f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {TEMPLATE_ID: "accept"}}
        )
        wechat_sandbox.fail("subscribe_send", -1, times=2, openid=openid)
        nid = await send(account)
        assert (await settled(nid)).status == "retrying"
        await notify.sweep()
        await asyncio.gather(notify.sweep(), notify.sweep())
        n = await settled(nid)
        assert n.status == "sent" and n.channel == "wechat" and n.attempts == 3
        assert len(wechat_sandbox.delivered(openid)) == 1
        assert await sms_texts(phone) == []
    finally:
        s.retry_backoff_s = before


async def test_unknown_subscription_template_is_refused(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    headers, *_ = await wechat_resident(client, wechat_sandbox)
    r = await client.post(
        f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {"bogus": "accept"}}
    )
    assert r.status_code == 422 and r.json()["unknown"] == ["bogus"]
    r = await client.post(f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {"x": "maybe"}})
    assert r.status_code == 422
