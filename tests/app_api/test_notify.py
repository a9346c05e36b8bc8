"""Notifications: retries without duplicates, quiet hours, preferences, WeChat subscription grants."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from sqlmodel import select

from app_api.core.clock import CHINA_TZ
from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.errors import UpstreamError
from app_api.platform import notify
from app_api.platform.notify import delivery
from app_api.platform.sms import SandboxSms
from tests.conftest import LoginFn, new_phone

pytestmark = pytest.mark.asyncio
API = "/api/v1"

notify.register_template(
    "test.status_changed",
    "您申请的“$item”$status。",
    wechat_fields={"thing1": "$item", "phrase2": "$status", "time3": "$at"},
)
notify.register_template("test.news", "$text", category="testnews")


class FlakySms(SandboxSms):
    """The SMS sandbox, timing out a set number of times per phone."""

    def __init__(self) -> None:
        self.fail_for: dict[str, int] = {}
        self.refuse: set[str] = set()  # phones whose messages the provider refuses for good
        self.stop_after_send: set[str] = set()  # the worker is stopped right after the provider took it
        self.calls: dict[str, int] = {}
        self.gate: asyncio.Event | None = None  # when set, every send waits for it to open

    async def send(
        self, phone: str, kind: str, params: Mapping[str, object], *, text: str | None = None
    ) -> str:
        self.calls[phone] = self.calls.get(phone, 0) + 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_for.get(phone, 0) > 0:
            self.fail_for[phone] -= 1
            raise UpstreamError("短信发送失败，请稍后再试", upstream_code="RequestTimeout")
        if phone in self.refuse:
            raise UpstreamError(
                "短信发送失败，请稍后再试",
                upstream_code="InvalidParameterValue.TemplateParameterFormatError",
                upstream_message="template parameter format error",
                retryable=False,
            )
        sent = await super().send(phone, kind, params, text=text)
        if phone in self.stop_after_send:
            raise asyncio.CancelledError()
        return sent


@pytest.fixture
def sms() -> Iterator[FlakySms]:
    from app_api.platform import sms as sms_mod

    before = sms_mod.get_sms()
    flaky = FlakySms()
    sms_mod._gateway = flaky
    yield flaky
    sms_mod._gateway = before


@pytest.fixture(autouse=True)
def fast_retries() -> Iterator[None]:
    s = notify.get_notify_settings()
    before = list(s.retry_backoff_s)
    s.retry_backoff_s = [0]
    yield
    s.retry_backoff_s = before


async def account_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return str((await client.get(f"{API}/me", headers=headers)).json()["id"])


async def no_quiet_hours(account: str) -> None:
    async with session_scope() as s:
        pref = await notify.preference_of(s, account)
        pref.quiet_hours_enabled = False
        s.add(pref)


async def send(
    account: str, template: str = "test.status_changed", urgent: bool = False, **params: Any
) -> str:
    params = params or {"item": "居民身份证换领", "status": "已办结", "at": "2026-11-22 10:00"}
    async with session_scope() as s:
        n = await notify.send(s, account_id=account, template=template, params=params, urgent=urgent)
        return n.id


async def row(nid: str) -> notify.Notification:
    async with sessionmaker()() as s:
        n = await s.get(notify.Notification, nid)
        assert n is not None
        return n


async def attempts(nid: str) -> list[notify.NotificationAttempt]:
    async with sessionmaker()() as s:
        q = select(notify.NotificationAttempt).where(notify.NotificationAttempt.notification_id == nid)
        return sorted((await s.exec(q)).all(), key=lambda a: a.at)


async def settled(nid: str, timeout: float = 5.0) -> notify.Notification:
    """Wait for the job the outbox sent after commit to finish its attempt."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        n = await row(nid)
        if n.status != "pending" and n.claimed_until is None:
            return n
        if loop.time() > end:
            raise AssertionError(f"notification still {n.status}")
        await asyncio.sleep(0.02)


async def texts(sms: FlakySms, phone: str, template: str = "test.status_changed") -> list[str]:
    return [m["text"] for m in await sms.inbox(phone) if m["template"] == template]


async def test_fails_twice_then_succeeds_is_delivered_exactly_once(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    account = await account_id(client, await login(phone))
    await no_quiet_hours(account)
    sms.fail_for[phone] = 2

    nid = await send(account)
    n = await settled(nid)
    assert n.status == "retrying" and n.attempts == 1
    assert await texts(sms, phone) == []

    await notify.sweep()
    assert (await row(nid)).status == "retrying"
    # The next sweeps race each other and the delivery job: the claim lets only one send.
    await asyncio.gather(notify.sweep(), notify.sweep(), notify.deliver_now(nid))
    n = await row(nid)
    assert n.status == "sent" and n.attempts == 3 and n.channel == "sms"
    await notify.sweep()
    assert await texts(sms, phone) == ["【我家亳州】您申请的“居民身份证换领”已办结。"]
    assert sms.calls[phone] == 1 + 3  # the login code, then three attempts
    tries = await attempts(nid)
    assert [a.ok for a in tries] == [False, False, True]
    assert tries[0].error_code == "sms.RequestTimeout"


async def test_gives_up_after_max_attempts_and_says_so(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    headers = await login(phone)
    account = await account_id(client, headers)
    await no_quiet_hours(account)
    sms.fail_for[phone] = 100
    nid = await send(account)
    await settled(nid)
    for _ in range(notify.get_notify_settings().max_attempts + 2):
        await notify.sweep()
    n = await row(nid)
    assert n.status == "failed" and n.attempts == notify.get_notify_settings().max_attempts
    assert len(await attempts(nid)) == n.attempts
    assert n.last_error == "all channels failed: sms: sms.RequestTimeout"
    assert sms.calls[phone] == 1 + n.attempts
    listed = (await client.get(f"{API}/me/notifications", headers=headers)).json()["items"]
    mine = next(i for i in listed if i["id"] == nid)
    assert mine["status_label"] == "发送失败" and mine["text"].endswith("已办结。")


def china(h: int, m: int = 0) -> str:
    return f"{h % 24:02d}:{m:02d}"


async def test_quiet_hours_defer_non_urgent_messages_until_they_end(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = new_phone()
    headers = await login(phone)
    account = await account_id(client, headers)
    local = utcnow().astimezone(CHINA_TZ)
    r = await client.patch(
        f"{API}/me/notification-settings",
        headers=headers,
        json={"quiet_start": china(local.hour - 1), "quiet_end": china(local.hour + 2)},
    )
    assert r.status_code == 200 and r.json()["quiet_end"] == china(local.hour + 2)

    nid = await send(account)
    urgent = await send(account, urgent=True, item="燃气泄漏检修", status="需立即处理")
    n = await row(nid)
    assert n.status == "deferred"
    end = n.next_attempt_at
    assert end is not None and end.astimezone(CHINA_TZ).strftime("%H:%M") == china(local.hour + 2)
    assert (await settled(urgent)).status == "sent"  # urgent ignores quiet hours
    await notify.sweep()
    assert (await row(nid)).status == "deferred"
    assert len(await texts(sms, phone)) == 1
    listed = (await client.get(f"{API}/me/notifications", headers=headers)).json()["items"]
    assert next(i for i in listed if i["id"] == nid)["deferred_until"] is not None

    # Quiet hours are over: the next sweep delivers it, once.
    monkeypatch.setattr(delivery, "utcnow", lambda: end + dt.timedelta(minutes=1))
    await notify.sweep()
    await notify.sweep()
    assert (await row(nid)).status == "sent"
    assert await texts(sms, phone) == [
        "【我家亳州】您申请的“居民身份证换领”已办结。",
        "【我家亳州】您申请的“燃气泄漏检修”需立即处理。",
    ]


async def test_quiet_window_across_midnight() -> None:
    pref = notify.NotifyPreference(account_id="x", quiet_start="22:00", quiet_end="07:00")
    at = lambda h, m=0: dt.datetime(2026, 3, 1, h, m, tzinfo=CHINA_TZ)  # noqa: E731
    assert notify.quiet_until(pref, at(23, 30)) == dt.datetime(2026, 3, 2, 7, 0, tzinfo=CHINA_TZ)
    assert notify.quiet_until(pref, at(6, 59)) == dt.datetime(2026, 3, 1, 7, 0, tzinfo=CHINA_TZ)
    assert notify.quiet_until(pref, at(7, 0)) is None
    assert notify.quiet_until(pref, at(21, 59)) is None
    pref.quiet_hours_enabled = False
    assert notify.quiet_until(pref, at(23, 30)) is None


async def test_preferences_switch_channels_but_urgent_still_reaches_sms(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    headers = await login(phone)
    account = await account_id(client, headers)
    r = await client.patch(
        f"{API}/me/notification-settings",
        headers=headers,
        json={"sms_enabled": False, "quiet_hours_enabled": False, "muted_categories": ["testnews"]},
    )
    assert r.status_code == 200, r.text
    quiet = await settled(await send(account))
    assert quiet.status == "in_app" and quiet.channel == "in_app"
    assert (await settled(await send(account, urgent=True))).status == "sent"
    assert len(await texts(sms, phone)) == 1

    await client.patch(f"{API}/me/notification-settings", headers=headers, json={"sms_enabled": True})
    muted = await settled(await send(account, template="test.news", text="社区活动通知"))
    assert muted.status == "in_app"
    assert await texts(sms, phone, "test.news") == []


async def test_bad_preferences_are_refused_and_nothing_changes(
    login: LoginFn, client: httpx.AsyncClient
) -> None:
    headers = await login()
    before = (await client.get(f"{API}/me/notification-settings", headers=headers)).json()
    r = await client.patch(f"{API}/me/notification-settings", headers=headers, json={"quiet_start": "25:00"})
    assert r.status_code == 422 and r.json()["code"] == "app.validation_failed"
    r = await client.patch(
        f"{API}/me/notification-settings",
        headers=headers,
        json={"sms_enabled": False, "muted_categories": ["nope"]},
    )
    assert r.status_code == 422 and r.json()["unknown"] == ["nope"]
    assert (await client.get(f"{API}/me/notification-settings", headers=headers)).json() == before


async def test_unknown_template_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        async with session_scope() as s:
            await notify.send(s, account_id="nobody", template="no.such_template")


async def test_operations_see_delivery_attempts_but_not_message_text(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    account = await account_id(client, await login(phone))
    await no_quiet_hours(account)
    sms.fail_for[phone] = 1
    nid = await send(account, item="低保申请", status="已受理")
    await settled(nid)
    await notify.sweep()
    admin = await login(roles=["admin"])
    r = await client.get(
        f"{API}/admin/notifications", headers=admin, params={"template": "test.status_changed"}
    )
    assert r.status_code == 200
    mine = next(i for i in r.json()["items"] if i["id"] == nid)
    assert mine["status"] == "sent" and [t["ok"] for t in mine["tries"]] == [False, True]
    assert mine["tries"][0]["error_code"] == "sms.RequestTimeout"
    assert "低保申请" not in r.text
    assert r.json()["counts"]["sent"] >= 1
    resident = await login()
    assert (await client.get(f"{API}/admin/notifications", headers=resident)).status_code == 403


async def test_outcome_is_recorded_even_when_the_database_is_briefly_locked(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    phone = new_phone()
    account = await account_id(client, await login(phone))
    await no_quiet_hours(account)
    real = delivery._record_once
    fails = {"left": 2}

    async def locked_twice(nid: str, plan: Any) -> str:
        if fails["left"]:
            fails["left"] -= 1
            raise sa.exc.OperationalError("UPDATE app_notification", {}, Exception("database is locked"))
        return await real(nid, plan)

    monkeypatch.setattr(delivery, "_record_once", locked_twice)
    nid = await send(account)
    n = await settled(nid)
    assert n.status == "sent" and fails["left"] == 0
    await notify.sweep()
    assert len(await texts(sms, phone)) == 1


async def test_sms_refused_for_good_fails_at_once_without_retries(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    headers = await login(phone)
    account = await account_id(client, headers)
    await no_quiet_hours(account)
    sms.refuse.add(phone)
    nid = await send(account)
    n = await settled(nid)
    assert n.status == "failed" and n.attempts == 1 and n.next_attempt_at is None
    assert n.last_error == "all channels failed: sms: sms.InvalidParameterValue.TemplateParameterFormatError"
    for _ in range(3):
        await notify.sweep()
    assert sms.calls[phone] == 1 + 1  # the login code, then the one refused message
    admin = await login(roles=["admin"])
    r = await client.get(f"{API}/admin/notifications", headers=admin, params={"status": "failed"})
    mine = next(i for i in r.json()["items"] if i["id"] == nid)
    assert [(c["channel"], c["state"], c["tries"]) for c in mine["channels"]] == [("sms", "failed", 1)]


async def test_a_send_whose_outcome_was_lost_is_not_repeated(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    headers = await login(phone)
    account = await account_id(client, headers)
    # Held for quiet hours (no delivery job runs it), then due: this test plays the worker.
    r = await client.patch(
        f"{API}/me/notification-settings",
        headers=headers,
        json={"quiet_hours_enabled": True, "quiet_start": "00:00", "quiet_end": "23:59"},
    )
    assert r.status_code == 200
    nid = await send(account)
    assert (await row(nid)).status == "deferred"
    await no_quiet_hours(account)
    async with session_scope() as s:
        n = await s.get(notify.Notification, nid)
        assert n is not None
        n.next_attempt_at = None
        s.add(n)

    # The provider takes the message, then the worker is stopped before it records that.
    sms.stop_after_send.add(phone)
    with pytest.raises(asyncio.CancelledError):
        await notify.deliver_now(nid)
    assert len(await texts(sms, phone)) == 1
    # The message is free again, but its SMS is still in flight as far as anyone knows: left alone.
    assert await notify.deliver_now(nid) == "busy"
    settings = notify.get_notify_settings()
    before = settings.claim_s
    settings.claim_s = 0.2
    try:
        await asyncio.sleep(0.3)
        await notify.sweep()
        await notify.sweep()
    finally:
        settings.claim_s = before
    n = await row(nid)
    assert n.status == "unconfirmed" and n.claimed_until is None
    assert sms.calls[phone] == 1 + 1 and len(await texts(sms, phone)) == 1
    listed = (await client.get(f"{API}/me/notifications", headers=headers)).json()["items"]
    assert next(i for i in listed if i["id"] == nid)["status_label"] == "已提交发送，未获确认"


async def test_a_sweep_out_of_time_leaves_the_rest_to_the_next(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    account = await account_id(client, await login(phone))
    await no_quiet_hours(account)
    sms.fail_for[phone] = 1
    nid = await send(account)
    assert (await settled(nid)).status == "retrying"
    settings = notify.get_notify_settings()
    before = settings.sweep_budget_s
    settings.sweep_budget_s = 0
    try:
        counts = await notify.sweep()
    finally:
        settings.sweep_budget_s = before
    assert counts.get("left", 0) >= 1 and (await row(nid)).status == "retrying"
    assert nid in await delivery.due()
    await notify.sweep()
    assert (await row(nid)).status == "sent" and len(await texts(sms, phone)) == 1
