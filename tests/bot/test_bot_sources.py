"""The answers come from the typed capabilities: absent ones are said so, offered ones are read with
the request's session, and the JSON Rasa gets keeps the action-server protocol's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bot_helpers import ACTIONS_URL, auth, body, texts, user
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.capabilities import ServiceCatalogue, UnpaidBill, UtilityBills, provide, withdraw
from bot.config import get_bot_settings
from bot.sender import account_sender_id


@pytest.fixture
def without_catalogue() -> Iterator[None]:
    offered = withdraw(ServiceCatalogue)
    yield
    if offered is not None:
        provide(ServiceCatalogue, offered)


class FakeBills:
    def __init__(self) -> None:
        self.sessions: list[AsyncSession | None] = []

    async def unpaid_of(self, account_id: str, *, session: AsyncSession | None = None) -> list[UnpaidBill]:
        self.sessions.append(session)
        return [
            UnpaidBill(title="水费 2026-10", biller="water", amount_fen=2000, due_date="2026-11-15"),
            UnpaidBill(title="", biller="gas", amount_fen=1250, due_date="2026-11-20"),
        ]


@pytest.fixture
def fake_bills() -> Iterator[FakeBills]:
    offered = withdraw(UtilityBills)
    fake = FakeBills()
    provide(UtilityBills, fake)
    yield fake
    withdraw(UtilityBills)
    if offered is not None:
        provide(UtilityBills, offered)


def logged_in(action: str, text: str, intent: str, account_id: str = "acc-src") -> dict[str, Any]:
    sender = account_sender_id(account_id, get_bot_settings())
    return body(action, [user(text, intent, {"account_id": account_id})], sender=sender)


async def test_no_catalogue_is_said_so(client: httpx.AsyncClient, without_catalogue: None) -> None:
    b = body("action_answer_item", [user("老年证多少钱", "ask_fee", item="老年证")], {"item": "老年证"})
    assert "事项目录暂时无法查询" in texts(await client.post(ACTIONS_URL, json=b, headers=auth()))
    b = body("action_find_item", [user("我要开个小吃店", "find_item")])
    assert "事项目录暂时无法查询" in texts(await client.post(ACTIONS_URL, json=b, headers=auth()))
    b = logged_in("action_application_status", "我的办件进度", "application_status")
    assert "办件进度暂时查不到" in texts(await client.post(ACTIONS_URL, json=b, headers=auth()))


async def test_no_bills_capability_is_said_so(client: httpx.AsyncClient) -> None:
    offered = withdraw(UtilityBills)
    try:
        b = logged_in("action_unpaid_bills", "我有没有欠费", "unpaid_bills")
        assert "待缴账单暂时查不到" in texts(await client.post(ACTIONS_URL, json=b, headers=auth()))
    finally:
        if offered is not None:
            provide(UtilityBills, offered)


async def test_unpaid_bills_in_yuan_with_the_request_session(
    client: httpx.AsyncClient, fake_bills: FakeBills
) -> None:
    b = logged_in("action_unpaid_bills", "我有没有欠费", "unpaid_bills")
    text = texts(await client.post(ACTIONS_URL, json=b, headers=auth()))
    assert text == "您有2笔待缴账单，共32.50元：\n水费 2026-10：20元\ngas：12.50元"
    assert len(fake_bills.sessions) == 1 and fake_bills.sessions[0] is not None


async def test_session_start_events_keep_the_protocol_shape(client: httpx.AsyncClient) -> None:
    b = body("action_session_start", [user("你好", "greet", {"elderly": True})])
    r = await client.post(ACTIONS_URL, json=b, headers=auth())
    assert r.status_code == 200
    assert r.json() == {
        "events": [
            {"event": "session_started", "timestamp": None},
            {"event": "slot", "timestamp": None, "name": "elderly", "value": True},
            {"event": "action", "timestamp": None, "name": "action_listen"},
        ],
        "responses": [],
    }


async def test_item_answer_has_text_and_buttons_only(client: httpx.AsyncClient) -> None:
    b = body("action_answer_item", [user("老年证多少钱", "ask_fee", item="老年证")], {"item": "老年证"})
    r = await client.post(ACTIONS_URL, json=b, headers=auth())
    (message,) = r.json()["responses"]
    assert set(message) == {"text", "buttons"}
    assert all(set(button) == {"title", "payload"} for button in message["buttons"])
    assert message["buttons"][0]["payload"].startswith('/start_application{"item": "')
