"""Which item a conversation is about, through the action webhook as Rasa calls it (no Rasa needed):
an item the model was never trained on, a new mention replacing the old one, an unknown item,
a long gap, and the confirmation step left for a new question or after a silence."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bot_helpers import ACTIONS_URL as URL
from bot_helpers import (
    NEW_ITEM_MATERIAL,
    NEW_ITEM_NAME,
    auth,
    body,
    catalogue_item,
    import_new_item,
    texts,
    user,
)

from app_api.core.db import session_scope
from bot.pinyin import to_chinese
from bot.sources import Sources


@pytest.fixture
async def new_item(client: httpx.AsyncClient, login: Any) -> str:
    await import_new_item(client, await login(roles=["admin"]))
    return NEW_ITEM_NAME


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "timestamp": None, "name": name, "value": value}


def at(event: dict[str, Any], ts: float) -> dict[str, Any]:
    return {**event, "timestamp": ts}


def validation(form: str, said: dict[str, Any], before: list[dict[str, Any]], slots: dict[str, Any],
               requested: str | None, prefilled: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The temporary tracker Rasa sends to ``validate_<form>``: the conversation, the requested
    slot, the form's own action, then the candidate slots (extracted now or filled before)."""
    events = [*before, said, {"event": "slot", "name": "requested_slot", "value": requested},
              {"event": "action", "name": form}]  # fmt: skip
    events += [slot(k, v) for k, v in (prefilled or {}).items()]
    return body(f"validate_{form}", events, {**slots, "requested_slot": requested},
                active_loop=form if requested else None)  # fmt: skip


def slot_events(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return {e["name"]: e["value"] for e in r.json()["events"] if e["event"] == "slot"}


async def test_an_item_imported_now_is_recognised_by_name_pinyin_and_typo(
    client: httpx.AsyncClient, new_item: str
) -> None:
    # The model extracts no entity for a name it never saw; the text names it.
    for said in (f"{new_item}要带什么材料", "蜂农转厂证明要带什么材料"):
        b = validation("item_question_form", user(said, "ask_materials"), [], {}, None)
        assert slot_events(await client.post(URL, json=b, headers=auth())) == {"item": new_item}, said
    # Pinyin is turned into the Chinese name before the NLU sees it (with the live catalogue).
    async with session_scope() as s:
        sources = Sources(s)
        chinese = await to_chinese("fengnong zhuanchang zhengming yao dai shenme cailiao",
                                   lambda q: sources.search(q, limit=3))  # fmt: skip
    assert chinese == f"{new_item}要带什么材料"
    answer = texts(await client.post(URL, json=body("action_answer_item", [user(chinese, "ask_materials")],
                                                    {"item": new_item}), headers=auth()))  # fmt: skip
    assert new_item in answer and NEW_ITEM_MATERIAL in answer


async def test_a_new_mention_replaces_the_old_item(client: httpx.AsyncClient) -> None:
    before = [user("老年证要带什么材料", "ask_materials", item="老年证")]
    said = user("那居住证呢", "inform")
    b = validation("item_question_form", said, before, {"item": "老年人优待证办理"}, None,
                   {"item": "老年人优待证办理"})  # fmt: skip
    item = await catalogue_item("居住证")
    assert slot_events(await client.post(URL, json=b, headers=auth())) == {"item": item["name"]}


async def test_an_unknown_item_is_not_swapped_for_the_previous_one(client: httpx.AsyncClient) -> None:
    before = [user("老年证要带什么材料", "ask_materials", item="老年证")]
    said = user("狗证要带什么材料", "ask_materials")
    b = validation("item_question_form", said, before, {"item": "老年人优待证办理"}, None,
                   {"item": "老年人优待证办理"})  # fmt: skip
    r = await client.post(URL, json=b, headers=auth())
    assert slot_events(r) == {"item": None}
    assert "没有找到“狗证”" in texts(r)


async def test_a_question_without_an_item_keeps_the_item_and_after_a_long_gap_asks(
    client: httpx.AsyncClient,
) -> None:
    t0 = 1_700_000_000.0
    before = [at(user("老年证要带什么材料", "ask_materials", item="老年证"), t0),
              at({"event": "bot", "text": "办理老年证需要准备"}, t0 + 1)]  # fmt: skip
    soon = validation("item_question_form", at(user("要多少钱", "ask_fee"), t0 + 60), before,
                      {"item": "老年人优待证办理"}, None, {"item": "老年人优待证办理"})  # fmt: skip
    assert slot_events(await client.post(URL, json=soon, headers=auth())) == {"item": "老年人优待证办理"}
    late = validation("item_question_form", at(user("要多少钱", "ask_fee"), t0 + 3600), before,
                      {"item": "老年人优待证办理"}, None, {"item": "老年人优待证办理"})  # fmt: skip
    assert slot_events(await client.post(URL, json=late, headers=auth())) == {"item": None}


async def test_a_question_without_an_item_after_a_topic_change_asks_which(client: httpx.AsyncClient) -> None:
    before = [
        user("老年证要带什么材料", "ask_materials", item="老年证"),
        user("我有没有欠费", "unpaid_bills"),
    ]
    b = validation("item_question_form", user("要多少钱", "ask_fee"), before, {"item": "老年人优待证办理"}, None,
                   {"item": "老年人优待证办理"})  # fmt: skip
    assert slot_events(await client.post(URL, json=b, headers=auth())) == {"item": None}


CONFIRMING = {"item": "老年人优待证办理", "confirm": None}


async def test_a_new_question_at_the_confirmation_ends_it_and_is_answered(client: httpx.AsyncClient) -> None:
    before = [user("我要申请老年证", "start_application", item="老年证"), slot("item", "老年人优待证办理")]
    said = user("居住证要带什么材料", "ask_materials", item="居住证")
    # Rasa has already put the new entity in the item slot when the form validates.
    now = {**CONFIRMING, "item": "居住证"}
    b = validation("application_form", said, before, now, "confirm", {"item": "居住证"})
    ended = slot_events(await client.post(URL, json=b, headers=auth()))
    assert ended == {"confirm": None, "requested_slot": None}
    # The rule then runs action_start_application: nothing applied for, the question answered.
    r = await client.post(URL, json=body("action_start_application", [*before, said, slot("item", "居住证")], now),
                          headers=auth())  # fmt: skip
    text = texts(r)
    item = await catalogue_item("居住证")
    assert "先不为您申请“老年人优待证办理”" in text and item["name"] in text
    assert all(m["name"] in text for m in item["materials"] if m["required"])
    assert "一键申报" not in text


async def test_a_change_of_mind_at_the_confirmation_confirms_the_new_item(client: httpx.AsyncClient) -> None:
    before = [user("我要申请老年证", "start_application", item="老年证")]
    said = user("不对，是居住证", "inform")
    b = validation("application_form", said, before, CONFIRMING, "confirm")
    item = await catalogue_item("居住证")
    assert slot_events(await client.post(URL, json=b, headers=auth())) == {"item": item["name"]}


async def test_a_yes_after_a_long_silence_does_not_apply(client: httpx.AsyncClient) -> None:
    t0 = 1_700_000_000.0
    before = [at(user("我要申请老年证", "start_application", item="老年证"), t0),
              at({"event": "bot", "text": "确认为您发起“老年人优待证办理”的申请吗？"}, t0 + 1)]  # fmt: skip
    said = at(user("确认", "affirm"), t0 + 3600)
    b = validation("application_form", said, before, CONFIRMING, "confirm", {"confirm": True})
    assert slot_events(await client.post(URL, json=b, headers=auth())) == {
        "confirm": None,
        "requested_slot": None,
    }
    r = await client.post(URL, json=body("action_start_application", [*before, said], CONFIRMING),
                          headers=auth())  # fmt: skip
    text = texts(r)
    assert "已超时" in text and "一键申报" not in text
    # Answered at once, the same yes goes through (the form sets confirm).
    b = validation("application_form", at(user("确认", "affirm"), t0 + 30), before, CONFIRMING, "confirm",
                   {"confirm": True})  # fmt: skip
    assert slot_events(await client.post(URL, json=b, headers=auth())) == {"confirm": True}
