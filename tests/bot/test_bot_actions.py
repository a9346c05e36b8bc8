"""The action webhook, called the way Rasa calls it (no Rasa needed for these)."""

from __future__ import annotations

import httpx
from bot_helpers import ACTIONS_URL as URL
from bot_helpers import auth, body, catalogue_item, texts, user

from bot.config import get_bot_settings
from bot.sender import account_sender_id


async def test_rasa_must_present_the_shared_token(client: httpx.AsyncClient) -> None:
    b = body(
        "action_answer_item", [user("老年证要带什么材料", "ask_materials", item="老年证")], {"item": "老年证"}
    )
    r = await client.post(URL, json=b)
    assert r.status_code == 401
    r = await client.post(URL, json=b, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json()["code"] == "bot.action_token_invalid"


async def test_materials_come_from_the_catalogue(client: httpx.AsyncClient) -> None:
    item = await catalogue_item("老年证")
    b = body(
        "action_answer_item", [user("老年证要带什么材料", "ask_materials", item="老年证")], {"item": "老年证"}
    )
    r = await client.post(URL, json=b, headers=auth())
    text = texts(r)
    assert item["name"] in text
    for m in item["materials"]:
        assert m["name"] in text
    events = r.json()["events"]
    assert {"event": "slot", "timestamp": None, "name": "item", "value": item["name"]} in events


async def test_the_fee_question_after_a_bare_name_answers_the_fee(client: httpx.AsyncClient) -> None:
    events = [user("办营业执照多少钱", "ask_fee"), user("个体户执照", "inform", item="个体户执照")]
    r = await client.post(
        URL, json=body("action_answer_item", events, {"item": "个体工商户设立登记"}), headers=auth()
    )
    text = texts(r)
    assert "个体工商户设立登记" in text
    assert "不收费" in text or "元" in text
    assert "材料" not in text.split("\n")[0]


async def test_an_unknown_item_is_said_so_and_the_slot_cleared(client: httpx.AsyncClient) -> None:
    b = body(
        "action_answer_item",
        [user("火星签证要什么材料", "ask_materials", item="火星签证")],
        {"item": "火星签证"},
    )
    r = await client.post(URL, json=b, headers=auth())
    assert "没有找到“火星签证”" in texts(r)
    assert {"event": "slot", "timestamp": None, "name": "item", "value": None} in r.json()["events"]


async def test_form_validation_rejects_an_off_topic_answer(client: httpx.AsyncClient) -> None:
    events = [
        user("收费吗", "ask_fee"),
        {"event": "slot", "name": "requested_slot", "value": "item"},
        {"event": "action", "name": "item_question_form"},
    ]
    events.insert(1, user("今天天气怎么样", "out_of_scope"))
    b = body(
        "validate_item_question_form", events, {"requested_slot": "item"}, active_loop="item_question_form"
    )
    r = await client.post(URL, json=b, headers=auth())
    assert r.status_code == 400
    assert r.json()["action_name"] == "validate_item_question_form"
    assert r.json()["error"]


async def test_form_validation_canonicalises_the_item(client: httpx.AsyncClient) -> None:
    events = [
        user("老年证", "inform", item="老年卡"),
        {"event": "slot", "name": "requested_slot", "value": "item"},
        {"event": "action", "name": "item_question_form"},
        {"event": "slot", "name": "item", "value": "老年卡"},
    ]
    b = body("validate_item_question_form", events, {"requested_slot": "item", "item": "老年卡"},
             active_loop="item_question_form")  # fmt: skip
    r = await client.post(URL, json=b, headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["events"] == [
        {"event": "slot", "timestamp": None, "name": "item", "value": "老年人优待证办理"}
    ]


async def test_second_failure_in_a_row_hands_off_to_12345(client: httpx.AsyncClient) -> None:
    one = [user("你好", "greet"), user("讲个笑话", "out_of_scope")]
    r = await client.post(URL, json=body("action_handle_failure", one), headers=auth())
    assert r.json()["responses"] == []
    two = [*one, user("股票涨吗", "out_of_scope")]
    r = await client.post(URL, json=body("action_handle_failure", two), headers=auth())
    assert r.json()["responses"] == [{"response": "utter_handoff"}]


async def test_records_need_a_genuine_logged_in_sender(client: httpx.AsyncClient) -> None:
    settings = get_bot_settings()
    # Metadata claiming an account, but the sender id is not that account's: treated as anonymous.
    forged = [user("我的办件进度", "application_status", {"account_id": "someone-else"})]
    r = await client.post(URL, json=body("action_application_status", forged, sender="u123"), headers=auth())
    assert "需要先登录" in texts(r)
    genuine = [user("我的办件进度", "application_status", {"account_id": "acc-1"})]
    sender = account_sender_id("acc-1", settings)
    r = await client.post(URL, json=body("action_application_status", genuine, sender=sender), headers=auth())
    assert "需要先登录" not in texts(r)


async def test_a_need_leads_to_the_items_to_apply_for(client: httpx.AsyncClient) -> None:
    r = await client.post(
        URL, json=body("action_find_item", [user("我要开个小吃店", "find_item")]), headers=auth()
    )
    text = texts(r)
    assert "个体工商户设立登记" in text
    assert "食品经营许可" in text


async def test_elderly_mode_gives_shorter_answers(client: httpx.AsyncClient) -> None:
    sender = account_sender_id("acc-2", get_bot_settings())
    ev = [
        user("老年证要带什么材料", "ask_materials", {"account_id": "acc-2", "elderly": False}, item="老年证")
    ]
    normal = texts(await client.post(URL, json=body("action_answer_item", ev, {"item": "老年证"}, sender),
                                     headers=auth()))  # fmt: skip
    ev = [
        user("老年证要带什么材料", "ask_materials", {"account_id": "acc-2", "elderly": True}, item="老年证")
    ]
    r = await client.post(
        URL, json=body("action_answer_item", ev, {"item": "老年证"}, sender), headers=auth()
    )
    short = texts(r)
    assert len(short) < len(normal)
    assert len(r.json()["responses"][0].get("buttons", [])) <= get_bot_settings().elderly_max_entries


async def test_unknown_action(client: httpx.AsyncClient) -> None:
    r = await client.post(URL, json=body("action_launch_rockets", [user("hi", "greet")]), headers=auth())
    assert r.status_code == 404
    assert r.json()["code"] == "bot.unknown_action"


async def test_nearest_liaison_station_in_a_city(client: httpx.AsyncClient) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.agents.seed import seed

    async with session_scope() as s:
        await seed(s)
    from app_api.platform.capabilities import LiaisonStations, lookup

    directory = lookup(LiaisonStations)
    assert directory is not None
    stations = await directory.nearest(city="常熟")
    assert stations
    ev = [user("我在常熟，哪里有代办点", "nearest_station", city="常熟")]
    text = texts(
        await client.post(URL, json=body("action_nearest_station", ev, {"city": "常熟"}), headers=auth())
    )
    assert stations[0]["name"] in text and stations[0]["address"] in text


async def test_unpaid_bills_need_login(client: httpx.AsyncClient) -> None:
    r = await client.post(
        URL, json=body("action_unpaid_bills", [user("我有没有欠费", "unpaid_bills")]), headers=auth()
    )
    assert "需要先登录" in texts(r)
