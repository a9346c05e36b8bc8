"""The chat API with the trained model running: what a resident sees, turn by turn.

Marked ``rasa``: they start ``rasa run`` with the model from ``scripts/rasa-train.sh`` (30-40 s once
per session). Rasa down or starting: ``test_bot_starting.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bot_helpers import catalogue_item

pytestmark = [pytest.mark.rasa, pytest.mark.slow]

URL = "/api/v1/bot/messages"


class Chat:
    """One resident's conversation (logged in with headers, or anonymous with a conversation id)."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}
        self.conversation_id: str | None = None

    async def say(self, message: str) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"message": message}
        if self.conversation_id:
            body["conversation_id"] = self.conversation_id
        r = await self.client.post(URL, json=body, headers=self.headers)
        assert r.status_code == 200, r.text
        data = r.json()
        self.conversation_id = data.get("conversation_id") or self.conversation_id
        return list(data["messages"])

    async def text(self, message: str) -> str:
        return "\n".join(m["text"] for m in await self.say(message))


@pytest.fixture
async def chat(client: httpx.AsyncClient, rasa_url_configured: str) -> Chat:
    return Chat(client)


async def test_materials_for_the_elderly_card(chat: Chat) -> None:
    item = await catalogue_item("老年证")
    text = await chat.text("老年证要带什么材料？")
    assert item["name"] in text
    required = [m["name"] for m in item["materials"] if m["required"]]
    assert required and all(name in text for name in required)


async def test_fee_for_a_sole_trader_licence(chat: Chat) -> None:
    item = await catalogue_item("个体工商户营业执照")
    text = await chat.text("办个体工商户营业执照要多少钱")
    assert item["name"] in text
    fen = item["fee"]["fee_fen"]
    assert ("不收费" in text) if fen == 0 else (f"{fen // 100}" in text)


async def test_a_form_started_and_finished(
    client: httpx.AsyncClient, login: Any, rasa_url_configured: str
) -> None:
    chat = Chat(client, await login())
    asked = await chat.text("我要一键申报")
    assert "哪个事项" in asked
    confirm = await chat.say("老年证")
    assert "确认为您发起" in confirm[-1]["text"] and "老年人优待证" in confirm[-1]["text"]
    assert [b["payload"] for b in confirm[-1]["buttons"]] == ["/affirm", "/deny"]
    done = await chat.say("确认")
    link = [b["payload"] for m in done for b in m.get("buttons") or []]
    item = await catalogue_item("老年证")
    assert item["start"]["deep_link"] in link, done
    # The form is over: the next question is answered normally.
    assert item["name"] in await chat.text("老年证收费吗")


async def test_the_item_form_asks_which_item_and_answers(chat: Chat) -> None:
    asked = await chat.text("要多长时间能办好？")
    assert "哪个事项" in asked
    item = await catalogue_item("居住证")
    answer = await chat.text("居住证")
    assert item["name"] in answer and f"{item['time_limit']['promised_days']}个工作日" in answer


async def test_status_query(client: httpx.AsyncClient, login: Any, rasa_url_configured: str) -> None:
    anonymous = Chat(client)
    assert "需要先登录" in await anonymous.text("我的申请办到哪一步了")
    headers = await login(level=3)
    item = await catalogue_item("老年证")
    r = await client.post(
        "/api/v1/columns/gov_services/applications",
        json={"item_code": item["code"], "client_key": "bot-status-" + item["code"]},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    text = await Chat(client, headers).text("查一下我的办件进度")
    assert item["name"] in text and "草稿" in text
    # Another resident sees only their own (none).
    other = await Chat(client, await login()).text("查一下我的办件进度")
    assert item["name"] not in other and "还没有提交过申请" in other


async def test_which_item_fits_a_need(chat: Chat) -> None:
    text = await chat.text("我要开个小吃店")
    assert "个体工商户设立登记" in text and "食品经营许可" in text


async def test_out_of_scope_then_the_hotline(chat: Chat) -> None:
    first = await chat.text("今天天气怎么样")
    assert "回答不了" in first and "12345" not in first
    second = await chat.text("给我讲个笑话吧")
    assert "12345" in second


async def test_elderly_mode_replies_are_shorter(client: httpx.AsyncClient, login: Any,
                                                rasa_url_configured: str) -> None:  # fmt: skip
    headers = await login()
    normal = await Chat(client, headers).text("老年证要带什么材料")
    r = await client.patch("/api/v1/me", json={"elderly_mode": True}, headers=headers)
    assert r.status_code == 200, r.text
    elderly = Chat(client, headers)
    short = await elderly.text("老年证要带什么材料")
    assert (await catalogue_item("老年证"))["name"] in short
    assert len(short) < len(normal)
