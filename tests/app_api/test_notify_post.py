"""``notify.post``: the message ``send`` stores, written without ORM objects (the submission's hot path)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app_api.core.clock import CHINA_TZ
from app_api.core.db import session_scope, sessionmaker, utcnow
from app_api.core.jobs.models import OutboxMessage
from app_api.platform import notify
from tests.app_api.test_notify import FlakySms, account_id, settled, texts
from tests.conftest import LoginFn, new_phone

pytestmark = pytest.mark.asyncio
PARAMS = {"item": "高龄津贴申领", "status": "已受理", "at": "2026-12-04 10:00"}
SAME = ("account_id", "template", "params", "text", "channel", "urgent", "status", "attempts", "sent_at")


@pytest.fixture
def sms() -> Iterator[FlakySms]:
    from app_api.platform import sms as sms_mod

    before = sms_mod.get_sms()
    flaky = FlakySms()
    sms_mod._gateway = flaky
    yield flaky
    sms_mod._gateway = before


def china(hour: int) -> str:
    return f"{hour % 24:02d}:00"


async def quiet_now(account: str, on: bool) -> None:
    """Quiet hours around the present hour (on), or none."""
    local = utcnow().astimezone(CHINA_TZ)
    async with session_scope() as s:
        pref = await notify.preference_of(s, account)
        pref.quiet_hours_enabled = on
        pref.quiet_start, pref.quiet_end = china(local.hour - 1), china(local.hour + 2)
        s.add(pref)


async def written(nid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The message's row and the delivery jobs naming it."""
    async with sessionmaker()() as s:
        n = await s.get(notify.Notification, nid)
        assert n is not None
        jobs = (await s.exec(sa.select(OutboxMessage.task_name, OutboxMessage.arguments))).all()  # type: ignore[call-overload]
        mine = [{"task": t, **a} for t, a in jobs if a.get("notification_id") == nid]
        return n.model_dump(), mine


async def both(account: str) -> tuple[tuple[dict[str, Any], list[dict[str, Any]]], ...]:
    async with session_scope() as s:
        sent = (await notify.send(s, account_id=account, template="test.status_changed", params=PARAMS)).id
    async with session_scope() as s:
        posted = await notify.post(s, account_id=account, template="test.status_changed", params=PARAMS)
    return await written(sent), await written(posted)


async def test_post_stores_the_message_send_stores(
    sms: FlakySms, login: LoginFn, client: httpx.AsyncClient
) -> None:
    phone = new_phone()
    account = await account_id(client, await login(phone))

    # Inside quiet hours: both deferred to the same end, no delivery job yet.
    await quiet_now(account, on=True)
    (sent, sent_jobs), (posted, posted_jobs) = await both(account)
    assert {k: sent[k] for k in SAME} == {k: posted[k] for k in SAME}
    assert posted["status"] == "deferred" and posted["next_attempt_at"] == sent["next_attempt_at"]
    assert posted["next_attempt_at"].astimezone(CHINA_TZ).strftime("%H:%M") == china(
        utcnow().astimezone(CHINA_TZ).hour + 2
    )
    assert sent_jobs == posted_jobs == []
    assert set(posted) == set(notify.Notification.__table__.c.keys())  # type: ignore[attr-defined]

    # Outside them: both pending, each with its one delivery job, and the posted one reaches the phone once.
    # The provider holds every send until both rows are read, so neither is read after its delivery.
    await quiet_now(account, on=False)
    sms.gate = asyncio.Event()
    try:
        (sent, sent_jobs), (posted, posted_jobs) = await both(account)
    finally:
        sms.gate.set()
    assert {k: sent[k] for k in SAME} == {k: posted[k] for k in SAME}
    assert posted["status"] == "pending" and posted["attempts"] == 0 and posted["sent_at"] is None
    assert posted["next_attempt_at"] is None
    assert [j["task"] for j in posted_jobs] == [j["task"] for j in sent_jobs] == ["app.notify_deliver"]
    assert (await settled(sent["id"])).status == "sent"
    assert (await settled(posted["id"])).status == "sent"
    assert (await texts(sms, phone)).count("【我家亳州】您申请的“高龄津贴申领”已受理。") == 2


async def test_post_honours_quiet_hours_changed_in_the_same_transaction(
    login: LoginFn, client: httpx.AsyncClient
) -> None:
    account = await account_id(client, await login(new_phone()))
    await quiet_now(account, on=False)
    local = utcnow().astimezone(CHINA_TZ)
    async with session_scope() as s:
        pref = await notify.preference_of(s, account)
        pref.quiet_hours_enabled = True  # not flushed when the message is written
        s.add(pref)
        nid = await notify.post(s, account_id=account, template="test.status_changed", params=PARAMS)
    row, jobs = await written(nid)
    assert row["status"] == "deferred" and jobs == []
    end = row["next_attempt_at"].astimezone(CHINA_TZ)
    assert end.strftime("%H:%M") == china(local.hour + 2) and end > local - dt.timedelta(minutes=1)
