"""WeChat subscription messages as a notification channel, with SMS as the fallback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app_api.core.db import session_scope, sessionmaker
from app_api.platform import notify
from app_api.platform.notify import delivery
from app_api.platform.notify.models import NotificationDispatch
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


# -- channel fallback -------------------------------------------------------------------------------

notify.register_template(
    "test.permit_ready",
    "您的“$item”已可领取。",
    wechat_fields={"thing1": "$item", "phrase2": "$status", "time3": "$at"},
)
PERMIT_TEMPLATE_ID = "tmpl-permit-ready-0002"


@pytest.fixture
def permit_template(wechat_sandbox: Any) -> Iterator[str]:
    """A second WeChat subscription template, configured for ``test.permit_ready``."""
    from miniprogram_bridge.config import get_mp_settings

    s = get_mp_settings()
    before = dict(s.wechat_template_ids)
    wechat_sandbox.add_template(PERMIT_TEMPLATE_ID, ["thing1", "phrase2", "time3"])
    s.wechat_template_ids = {**before, "test.permit_ready": PERMIT_TEMPLATE_ID}
    yield PERMIT_TEMPLATE_ID
    s.wechat_template_ids = before


@pytest.fixture
def backoff() -> Iterator[Any]:
    s = notify.get_notify_settings()
    before = (list(s.retry_backoff_s), dict(s.channel_max_attempts))
    yield s
    s.retry_backoff_s, s.channel_max_attempts = before


async def subscribed(
    client: httpx.AsyncClient, sandbox: Any, template_id: str
) -> tuple[dict[str, str], str, str, str]:
    """A WeChat resident who tapped "allow" once for ``template_id``: (headers, account, openid, phone)."""
    headers, account, openid, phone = await wechat_resident(client, sandbox)
    sandbox.subscribe(openid, template_id)
    r = await client.post(
        f"{API}/mp/wechat/subscriptions", headers=headers, json={"results": {template_id: "accept"}}
    )
    assert r.status_code == 200
    return headers, account, openid, phone


async def send_permit(account: str) -> str:
    async with session_scope() as s:
        params = {"item": "居住证", "status": "可领取", "at": "2026-12-03 10:00"}
        return (await notify.send(s, account_id=account, template="test.permit_ready", params=params)).id


async def permit_sms(phone: str) -> list[str]:
    from app_api.platform.sms import SandboxSms

    return [m["text"] for m in await SandboxSms().inbox(phone) if m["template"] == "test.permit_ready"]


async def dispatch(nid: str) -> dict[str, tuple[str, int, str | None]]:
    """channel -> (state, tries, error_code), as the operations view shows them."""
    async with sessionmaker()() as s:
        rows = await s.exec(select(NotificationDispatch).where(NotificationDispatch.notification_id == nid))
        return {d.channel: (d.state, d.tries, d.error_code) for d in rows.all()}


async def test_rejected_template_falls_back_to_one_sms_and_never_a_second(
    client: httpx.AsyncClient, wechat_sandbox: Any, permit_template: str, login: Any
) -> None:
    _, account, openid, phone = await subscribed(client, wechat_sandbox, permit_template)
    # The template is deleted in the mini-program console: WeChat answers 40037 for it from now on.
    wechat_sandbox.remove_template(permit_template)
    try:
        nid = await send_permit(account)
        n = await settled(nid)
        assert n.status == "sent" and n.channel == "sms" and n.attempts == 1
        assert await permit_sms(phone) == ["【我家亳州】您的“居住证”已可领取。"]
        assert [c["errcode"] for c in wechat_sandbox.sent_to(openid)] == [40037]
        assert await dispatch(nid) == {"wechat": ("failed", 1, "wechat.40037"), "sms": ("sent", 1, None)}

        # Sweeps, one after the other and two at once, and the delivery job again: nothing more.
        await notify.sweep()
        await asyncio.gather(notify.sweep(), notify.sweep(), notify.deliver_now(nid))
        assert await permit_sms(phone) == ["【我家亳州】您的“居住证”已可领取。"]
        assert len(wechat_sandbox.sent_to(openid)) == 1

        # Operations see which channel refused it and why.
        admin = await login(roles=["admin"])
        r = await client.get(
            f"{API}/admin/notifications", headers=admin, params={"template": "test.permit_ready"}
        )
        mine = next(i for i in r.json()["items"] if i["id"] == nid)
        assert [(c["channel"], c["state"], c["error_code"]) for c in mine["channels"]] == [
            ("wechat", "failed", "wechat.40037"),
            ("sms", "sent", None),
        ]
        assert "invalid template_id" in mine["channels"][0]["error"]
        # WeChat did not use the resident's grant: it stays for the next message once the template is back.
        async with sessionmaker()() as s:
            from app_api.platform.notify.preferences import subscription_of

            sub = await subscription_of(s, account, "wechat", "test.permit_ready")
            assert sub is not None and sub.remaining == 1
    finally:
        wechat_sandbox.add_template(permit_template, ["thing1", "phrase2", "time3"])


async def test_two_workers_holding_one_message_send_one_sms(
    client: httpx.AsyncClient, wechat_sandbox: Any, permit_template: str
) -> None:
    """Two workers both holding the message (two sweeps whose claims overlapped, a claim that
    lapsed mid-send): the per-channel claim still lets one WeChat call and one SMS out."""
    from app_api.core.db import utcnow

    _, account, openid, phone = await subscribed(client, wechat_sandbox, permit_template)
    wechat_sandbox.remove_template(permit_template)
    try:
        # Held for quiet hours (no delivery job), then due: only the workers below deliver it.
        async with session_scope() as s:
            pref = await notify.preference_of(s, account)
            pref.quiet_hours_enabled, pref.quiet_start, pref.quiet_end = True, "00:00", "23:59"
            s.add(pref)
        nid = await send_permit(account)
        async with session_scope() as s:
            pref = await notify.preference_of(s, account)
            pref.quiet_hours_enabled = False
            s.add(pref)

        results = await asyncio.gather(*(delivery._attempt(nid, utcnow()) for _ in range(4)))
        assert results.count("sent") >= 1 and set(results) <= {"sent", "busy"}
        await asyncio.gather(notify.sweep(), notify.sweep())
        n = await settled(nid)
        assert n.status == "sent" and n.channel == "sms"
        assert await permit_sms(phone) == ["【我家亳州】您的“居住证”已可领取。"]
        assert [c["errcode"] for c in wechat_sandbox.sent_to(openid)] == [40037]
        assert await dispatch(nid) == {"wechat": ("failed", 1, "wechat.40037"), "sms": ("sent", 1, None)}
    finally:
        wechat_sandbox.add_template(permit_template, ["thing1", "phrase2", "time3"])


async def test_resident_who_never_subscribed_gets_sms_without_a_wechat_call(
    client: httpx.AsyncClient, wechat_sandbox: Any
) -> None:
    _, account, openid, phone = await wechat_resident(client, wechat_sandbox)
    nid = await send(account)
    n = await settled(nid)
    assert n.status == "sent" and n.channel == "sms"
    assert len(await sms_texts(phone)) == 1
    assert wechat_sandbox.sent_to(openid) == []
    assert await dispatch(nid) == {
        "wechat": ("skipped", 0, "wechat.not_subscribed"),
        "sms": ("sent", 1, None),
    }


async def test_resident_without_wechat_binding_gets_sms(
    client: httpx.AsyncClient, wechat_sandbox: Any, login: Any
) -> None:
    from tests.conftest import new_phone

    phone = new_phone()
    headers = await login(phone)
    account = (await client.get(f"{API}/me", headers=headers)).json()["id"]
    await client.patch(
        f"{API}/me/notification-settings", headers=headers, json={"quiet_hours_enabled": False}
    )
    nid = await send(account)
    assert (await settled(nid)).channel == "sms"
    assert len(await sms_texts(phone)) == 1
    assert await dispatch(nid) == {"wechat": ("skipped", 0, "wechat.no_binding"), "sms": ("sent", 1, None)}


async def test_transient_wechat_failures_are_retried_on_time_and_delivered_on_wechat(
    client: httpx.AsyncClient, wechat_sandbox: Any, backoff: Any
) -> None:
    from tests.miniprogram_bridge.conftest import TEMPLATE_ID

    backoff.retry_backoff_s = [1.0]
    _, account, openid, phone = await subscribed(client, wechat_sandbox, TEMPLATE_ID)
    # WeChat's gateway answers 503, then the API says "system busy" (-1).
    wechat_sandbox.fail("subscribe_send", 0, times=1, openid=openid, status=503)
    wechat_sandbox.fail("subscribe_send", -1, times=1, openid=openid)
    nid = await send(account)
    n = await settled(nid)
    assert n.status == "retrying" and n.attempts == 1 and n.next_attempt_at is not None
    assert dict(await dispatch(nid))["wechat"] == ("retry", 1, "wechat.unreachable")

    await notify.sweep()  # before the backoff is over: left alone
    assert (await settled(nid)).attempts == 1
    await asyncio.sleep(1.1)
    await notify.sweep()  # due: the sweep takes it
    n = await settled(nid)
    assert n.status == "retrying" and n.attempts == 2
    await asyncio.sleep(1.1)
    await asyncio.gather(notify.sweep(), notify.sweep())
    n = await settled(nid)
    assert n.status == "sent" and n.channel == "wechat" and n.attempts == 3
    assert [c["errcode"] for c in wechat_sandbox.sent_to(openid)] == [503, -1, 0]
    assert len(wechat_sandbox.delivered(openid)) == 1
    assert await sms_texts(phone) == []
    assert await dispatch(nid) == {"wechat": ("sent", 3, None)}


async def test_wechat_failing_past_its_cap_falls_back_to_sms_once(
    client: httpx.AsyncClient, wechat_sandbox: Any, backoff: Any
) -> None:
    from tests.miniprogram_bridge.conftest import TEMPLATE_ID

    backoff.retry_backoff_s = [0]
    backoff.channel_max_attempts = {"wechat": 3}
    _, account, openid, phone = await subscribed(client, wechat_sandbox, TEMPLATE_ID)
    wechat_sandbox.fail("subscribe_send", 45009, times=100, openid=openid)  # daily quota reached
    nid = await send(account)
    assert (await settled(nid)).status == "retrying"
    for _ in range(4):
        await asyncio.gather(notify.sweep(), notify.sweep())
    n = await settled(nid)
    assert n.status == "sent" and n.channel == "sms" and n.attempts == 3
    assert [c["errcode"] for c in wechat_sandbox.sent_to(openid)] == [45009, 45009, 45009]
    assert len(await sms_texts(phone)) == 1
    assert await dispatch(nid) == {"wechat": ("exhausted", 3, "wechat.45009"), "sms": ("sent", 1, None)}


async def test_every_channel_refusing_ends_failed_not_retrying(
    client: httpx.AsyncClient, wechat_sandbox: Any, permit_template: str
) -> None:
    headers, account, openid, phone = await subscribed(client, wechat_sandbox, permit_template)
    wechat_sandbox.remove_template(permit_template)
    try:
        # The resident switched SMS off: WeChat is the only channel, and it refuses the template.
        async with session_scope() as s:
            pref = await notify.preference_of(s, account)
            pref.sms_enabled = False
            s.add(pref)
        nid = await send_permit(account)
        n = await settled(nid)
        assert n.status == "failed" and n.next_attempt_at is None
        assert n.last_error is not None and "wechat.40037" in n.last_error
        assert nid not in await delivery.due()
        await notify.sweep()
        assert (await settled(nid)).status == "failed"
        assert len(wechat_sandbox.sent_to(openid)) == 1 and await permit_sms(phone) == []
        assert await dispatch(nid) == {
            "wechat": ("failed", 1, "wechat.40037"),
            "sms": ("skipped", 0, "sms.switched_off"),
        }
        # The resident sees it failed (the message stays in their inbox).
        listed = (await client.get(f"{API}/me/notifications", headers=headers)).json()["items"]
        mine = next(i for i in listed if i["id"] == nid)
        assert mine["status"] == "failed" and mine["status_label"] == "发送失败"
    finally:
        wechat_sandbox.add_template(permit_template, ["thing1", "phrase2", "time3"])
