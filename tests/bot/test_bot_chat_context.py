"""The conversations of issue 18 with the trained model running: an item imported during the test,
a stale item, pinyin, and the confirmation step left for a new question.

Marked ``rasa``: they start ``rasa run`` with the model from ``scripts/rasa-train.sh``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bot_helpers import NEW_ITEM_MATERIAL, NEW_ITEM_NAME, catalogue_item, import_new_item
from test_bot_chat import Chat

pytestmark = [pytest.mark.rasa, pytest.mark.slow]


@pytest.fixture
async def chat(client: httpx.AsyncClient, rasa_url_configured: str) -> Chat:
    return Chat(client)


@pytest.mark.parametrize(
    "question",
    [
        f"{NEW_ITEM_NAME}要带什么材料",  # its exact name
        "fengnong zhuanchang zhengming yao dai shenme cailiao",  # pinyin
        "蜂农转厂证明要带什么材料",  # a typo (homophone)
    ],
)
async def test_an_item_imported_during_the_test_is_recognised(
    client: httpx.AsyncClient, login: Any, rasa_url_configured: str, question: str
) -> None:
    await import_new_item(client, await login(roles=["admin"]))
    text = await Chat(client).text(question)
    assert NEW_ITEM_NAME in text and NEW_ITEM_MATERIAL in text, text


async def test_a_dog_licence_after_the_elderly_card_is_not_the_elderly_card(chat: Chat) -> None:
    elderly = await catalogue_item("老年证")
    first = await chat.text("老年证要带什么材料")
    assert elderly["name"] in first
    text = await chat.text("狗证要带什么材料")
    assert "狗证" in text and elderly["name"] not in text, text
    assert not any(m["name"] in text for m in elderly["materials"] if m["required"])


async def test_pinyin_is_understood(chat: Chat) -> None:
    item = await catalogue_item("社保卡")
    text = await chat.text("shebao ka zen me ban")
    assert item["name"] in text and "再见" not in text, text


async def test_a_new_question_at_the_confirmation_moves_on(
    client: httpx.AsyncClient, login: Any, rasa_url_configured: str
) -> None:
    chat = Chat(client, await login())
    assert "哪个事项" in await chat.text("我要一键申报")
    assert "确认为您发起" in await chat.text("老年证")
    resident = await catalogue_item("居住证")
    text = await chat.text("居住证要带什么材料")
    assert "确认为您发起" not in text and resident["name"] in text, text
    assert all(m["name"] in text for m in resident["materials"] if m["required"])
    # The form is over: a yes now applies for nothing.
    later = await chat.say("确认")
    assert not any(b["title"] == "一键申报" for m in later for b in m.get("buttons") or [])


async def test_markup_is_neither_parsed_nor_echoed(chat: Chat) -> None:
    text = await chat.text("<script>alert('x')</script>老年证要带什么材料")
    assert "<script>" not in text and (await catalogue_item("老年证"))["name"] in text


async def test_a_person_please_offers_a_ticket_that_carries_the_conversation(
    client: httpx.AsyncClient, login: Any, rasa_url_configured: str
) -> None:
    headers = await login()
    chat = Chat(client, headers)
    await chat.say("老年证要带什么材料")
    handoff = await chat.say("转人工")
    buttons = [b["payload"] for m in handoff for b in m.get("buttons") or []]
    assert "12345" in "\n".join(m["text"] for m in handoff) and "wojia://bot/tickets/new" in buttons
    r = await client.post("/api/v1/bot/tickets", json={"question": "老年证能代办吗"}, headers=headers)
    assert r.status_code == 201, r.text
    turns = r.json()["transcript"]
    assert {"who": "resident", "text": "转人工"} in turns
    assert any(t["who"] == "assistant" and "12345" in t["text"] for t in turns)
