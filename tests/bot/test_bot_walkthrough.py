"""The conditions walk-through: started by the action webhook when a resident asks about an item's
conditions (as Rasa calls it), answered through the chat API without the NLU (Rasa is pointed at a
port where nothing listens: a message that reached it would answer 503), ending in the verdict, the
materials that apply and, logged in, an application draft only the resident can open."""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from bot_helpers import ACTIONS_URL, auth, body, user

from app_api.core.db import session_scope
from bot.config import BotSettings, get_bot_settings
from bot.sender import account_sender_id, anonymous_sender_id
from tests.citizens import new_id_number

CHAT = "/api/v1/bot/messages"
APPS = "/api/v1/columns/gov_services/applications"
ELDERLY_CARD = "老年人优待证办理"
LOW_INCOME = "最低生活保障申请"


@pytest.fixture(autouse=True)
def guide_offered() -> None:
    """The catalogue's side of the walk-through, offered as the column offers its capabilities."""
    from columns.gov_services.assist import provide_guide

    provide_guide()


@pytest.fixture
def no_rasa(app: Any) -> Iterator[None]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = BotSettings(rasa_url=f"http://127.0.0.1:{port}", state_file="")
    app.dependency_overrides[get_bot_settings] = lambda: settings
    yield
    app.dependency_overrides.pop(get_bot_settings, None)


async def verified_resident(
    client: httpx.AsyncClient, login: Any, birth: dt.date
) -> tuple[dict[str, str], str]:
    """A resident whose ID number (and so birth date) was verified at real-name authentication."""
    from app_api.core.crypto import encrypt_str
    from app_api.platform.accounts.models import Account
    from app_api.platform.accounts.principal import invalidate
    from app_api.platform.datahub.service import id_hash

    headers = await login(level=3)
    me = (await client.get("/api/v1/me", headers=headers)).json()
    number = new_id_number("341602", birth)
    async with session_scope() as s:
        account = await s.get(Account, me["id"])
        assert account is not None
        account.id_number_enc = encrypt_str(number, aad="id_number")
        account.id_number_hash = id_hash(number)
        s.add(account)
    await invalidate(me["id"])
    return headers, str(me["id"])


class Walk:
    """One conversation: the webhook call Rasa would make for "<item>需要什么条件", then chat turns."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str] | None, account_id: str | None):
        self.client = client
        self.headers = headers or {}
        self.account_id = account_id
        self.conversation_id = None if account_id else secrets.token_urlsafe(12)
        settings = get_bot_settings()
        self.sender = (
            account_sender_id(account_id, settings)
            if account_id
            else anonymous_sender_id(str(self.conversation_id), settings)
        )

    async def ask_conditions(self, item: str) -> list[dict[str, Any]]:
        meta = {"account_id": self.account_id} if self.account_id else {}
        events = [user(f"{item}需要什么条件", "ask_conditions", meta, item=item)]
        r = await self.client.post(
            ACTIONS_URL,
            json=body("action_answer_item", events, {"item": item}, sender=self.sender),
            headers=auth(),
        )
        assert r.status_code == 200, r.text
        return list(r.json()["responses"])

    async def say(self, message: str, status: int = 200) -> list[dict[str, Any]]:
        data: dict[str, Any] = {"message": message}
        if self.conversation_id:
            data["conversation_id"] = self.conversation_id
        r = await self.client.post(CHAT, json=data, headers=self.headers)
        assert r.status_code == status, r.text
        return list(r.json()["messages"]) if status == 200 else [r.json()]

    async def tap(self, messages: list[dict[str, Any]], title: str) -> list[dict[str, Any]]:
        button = next(b for m in messages for b in m.get("buttons") or () if b["title"] == title)
        return await self.say(button["payload"])


def text_of(messages: list[dict[str, Any]]) -> str:
    return "\n".join(str(m.get("text", "")) for m in messages)


def link_of(messages: list[dict[str, Any]], title: str = "一键申报") -> str:
    return next(b["payload"] for m in messages for b in m.get("buttons") or () if b["title"] == title)


async def test_elderly_card_takes_age_from_the_registry_and_ends_in_an_owned_draft(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    headers, account_id = await verified_resident(client, login, dt.date(1950, 3, 9))
    walk = Walk(client, headers, account_id)
    first = await walk.ask_conditions(ELDERLY_CARD)
    said = text_of(first)
    # The listed conditions, then the walk-through: the age is known, only the household is asked.
    assert "本市户籍，或持有本市居住证的非本市户籍老年人" in said
    assert "已根据您实名认证的信息核对：申请人须年满60周岁" in said
    assert "户籍是否在亳州市" in said and "年满60周岁？" not in said
    # Only the question's buttons: the answer's own ("要带什么材料"...) would compete with them.
    titles = [b["title"] for m in first for b in m.get("buttons") or ()]
    assert titles == ["是，亳州市户籍", "不是亳州市户籍", "不确定"]

    second = await walk.tap(first, "是，亳州市户籍")
    assert "委托他人代办的" in text_of(second)
    done = await walk.say("不是")  # typed: the buttons' words work too
    verdict = text_of(done)
    assert "您今年76周岁，已满60周岁" in verdict or "您今年75周岁，已满60周岁" in verdict
    assert "根据您的回答，符合" in verdict  # the household, declared
    # Each rule names the listed condition it checks: both are checked, nothing is left to a reviewer.
    assert "您符合“老年人优待证办理”的申请条件" in verdict and "需工作人员审核" not in verdict
    assert "（受理条件第1条：申请人年满60周岁）" in verdict
    assert "（受理条件第2条：本市户籍，或持有本市居住证的非本市户籍老年人）" in verdict
    assert "申请人居民身份证" in verdict and "近期免冠彩色证件照片" in verdict
    assert "居住证" not in verdict.split("需要准备")[1].split("已为您生成")[0]
    assert "授权委托书" not in verdict

    app_id = link_of(done).rsplit("/", 1)[1]
    r = await client.get(f"{APPS}/{app_id}", headers=headers)
    assert r.status_code == 200, r.text
    app = r.json()
    assert app["status"] == "draft" and app["item_name"] == ELDERLY_CARD
    assert any(e.get("kind") == "assistant_answers" for e in app.get("events") or app.get("timeline") or [])
    # Not another resident's to open.
    other = await login(level=3)
    assert (await client.get(f"{APPS}/{app_id}", headers=other)).status_code == 404
    # The walk-through is over: a late tap of one of its buttons changes nothing.
    late = await walk.tap(second, "不是")
    assert "已结束或超时" in text_of(late)


async def test_low_income_asks_the_resident_and_lists_the_materials_that_apply(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    headers, account_id = await verified_resident(client, login, dt.date(1980, 5, 1))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions(LOW_INCOME)
    assert "（1/3）您的户籍是否在亳州市？" in text_of(msgs)
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    assert "家庭成员有残疾的" in text_of(msgs)
    msgs = await walk.tap(msgs, "是")
    assert "委托他人代办的" in text_of(msgs)
    done = await walk.tap(msgs, "不是")
    verdict = text_of(done)
    assert "申请人须具有本市户籍：根据您的回答，符合" in verdict
    assert "共同生活家庭成员人均月收入低于当地低保标准：需工作人员审核" in verdict
    needed = verdict.split("需要准备")[1]
    assert "残疾人证" in needed and "授权委托书" not in needed and "家庭经济状况核对授权书" in needed
    app_id = link_of(done).rsplit("/", 1)[1]
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).json()["status"] == "draft"

    # The same resident, not of the city: a hard rule unmet, no draft.
    msgs = await walk.ask_conditions(LOW_INCOME)
    msgs = await walk.tap(msgs, "不是亳州市户籍")
    msgs = await walk.tap(msgs, "不是")
    done = await walk.tap(msgs, "不是")
    verdict = text_of(done)
    assert "暂不符合" in verdict and "根据您的回答，不符合" in verdict
    assert not any(b["title"] == "一键申报" for m in done for b in m.get("buttons") or ())


async def test_anonymous_resident_is_asked_the_age_and_told_to_log_in(
    client: httpx.AsyncClient, no_rasa: None
) -> None:
    walk = Walk(client, None, None)
    msgs = await walk.ask_conditions(ELDERLY_CARD)
    assert "您是否已年满60周岁？" in text_of(msgs)
    msgs = await walk.tap(msgs, "未满60周岁")
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.tap(msgs, "不是")
    assert "暂不符合" in text_of(done) and "申请人须年满60周岁：根据您的回答，不符合" in text_of(done)

    msgs = await walk.ask_conditions(ELDERLY_CARD)
    msgs = await walk.tap(msgs, "不确定")  # cannot be evaluated: a reviewer's, never passed
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.tap(msgs, "不是")
    verdict = text_of(done)
    assert "申请人须年满60周岁：您不确定或无法核实，需工作人员审核" in verdict
    assert "您符合" not in verdict
    assert "需要先登录" in verdict and link_of(done, "去登录") == get_bot_settings().login_link
    assert not any(b["title"] == "一键申报" for m in done for b in m.get("buttons") or ())


async def test_leaving_a_walkthrough_stale_buttons_double_taps_and_expiry(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    from sqlmodel import select

    from app_api.core.redis import get_redis
    from bot.models import BotWalkthrough

    headers, account_id = await verified_resident(client, login, dt.date(1948, 1, 1))
    walk = Walk(client, headers, account_id)
    first = await walk.ask_conditions(LOW_INCOME)
    # Redis wiped mid-walk-through: the state is in the database.
    await (await get_redis()).flushdb()
    second = await walk.tap(first, "是，亳州市户籍")
    # A double tap of the first button does not answer twice: the open question is asked again.
    again = await walk.tap(first, "是，亳州市户籍")
    assert text_of(again) == text_of(second)[: len(text_of(again))] and "（2/3）" in text_of(again)
    # "不用了" ends it without the NLU.
    ended = await walk.say("不用了")
    assert "已结束“最低生活保障申请”的条件核对" in text_of(ended)
    assert "已结束或超时" in text_of(await walk.tap(second, "是"))

    # A new question mid-walk-through leaves it and goes to the NLU (down here: 503), the walk-through gone.
    first = await walk.ask_conditions(LOW_INCOME)
    await walk.say("居住证在哪里办", status=503)
    assert "已结束或超时" in text_of(await walk.tap(first, "是，亳州市户籍"))

    # Silence: a walk-through past its time answers nothing, and a typed "是" goes to the NLU.
    first = await walk.ask_conditions(LOW_INCOME)
    async with session_scope() as s:
        row = (await s.exec(select(BotWalkthrough).where(BotWalkthrough.sender == walk.sender))).one()
        assert b"\xe4\xba\xb3" not in row.state_enc  # 亳 is not stored in clear
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        s.add(row)
    await walk.say("是", status=503)
    assert "已结束或超时" in text_of(await walk.tap(first, "是，亳州市户籍"))
    async with session_scope() as s:
        left = (await s.exec(select(BotWalkthrough).where(BotWalkthrough.sender == walk.sender))).all()
    assert left == []


async def test_a_forged_or_broken_payload_is_no_answer(client: httpx.AsyncClient, no_rasa: None) -> None:
    walk = Walk(client, None, None)
    first = await walk.ask_conditions(ELDERLY_CARD)
    payload = json.loads(next(b for b in first[-1]["buttons"])["payload"].removeprefix("/walkthrough"))
    forged = "/walkthrough" + json.dumps({**payload, "a": "maybe"})
    again = await walk.say(forged)
    assert "您是否已年满60周岁？" in text_of(again)
    assert "您是否已年满60周岁？" in text_of(await walk.say("/walkthrough{not json"))
    assert "您是否已年满60周岁？" in text_of(await walk.say("/walkthrough[1]"))
    await walk.say("不用了")
    assert "已结束或超时" in text_of(await walk.say("/walkthrough{not json"))


async def test_two_taps_at_once_make_one_draft(client: httpx.AsyncClient, login: Any, no_rasa: None) -> None:
    import asyncio

    headers, account_id = await verified_resident(client, login, dt.date(1955, 7, 7))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions(ELDERLY_CARD)
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    both = await asyncio.gather(walk.tap(msgs, "不是"), walk.tap(msgs, "不是"))
    links = {
        b["payload"] for m in both[0] + both[1] for b in m.get("buttons") or () if b["title"] == "一键申报"
    }
    assert len(links) == 1
    apps = (await client.get(APPS, headers=headers)).json()["applications"]
    assert [a["item_name"] for a in apps] == [ELDERLY_CARD]


async def test_without_the_catalogues_guide_the_listed_conditions_stand(
    client: httpx.AsyncClient, no_rasa: None
) -> None:
    from app_api.platform.capabilities import ConditionsGuide, provide, withdraw

    guide = withdraw(ConditionsGuide)
    try:
        msgs = await Walk(client, None, None).ask_conditions(ELDERLY_CARD)
    finally:
        assert guide is not None
        provide(ConditionsGuide, guide)  # type: ignore[arg-type]
    assert "申请人年满60周岁" in text_of(msgs) and "/walkthrough" not in json.dumps(msgs)
    assert any(b["title"] == "立即申请" for m in msgs for b in m.get("buttons") or ())


async def test_nothing_asked_when_the_registry_answers_everything(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    pension = "城乡居民基本养老保险待遇申领"
    headers, account_id = await verified_resident(client, login, dt.date(1960, 1, 2))
    msgs = await Walk(client, headers, account_id).ask_conditions(pension)
    said = text_of(msgs)
    assert "/walkthrough" not in json.dumps(msgs, ensure_ascii=False)  # no question
    assert "已满60周岁" in said and "累计缴费满15年：需工作人员审核" in said
    app_id = link_of(msgs).rsplit("/", 1)[1]
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).json()["item_name"] == pension
    # Asked again the same day: the same draft, not a second one.
    again = await Walk(client, headers, account_id).ask_conditions(pension)
    assert link_of(again) == link_of(msgs)

    young, young_id = await verified_resident(client, login, dt.date(1990, 6, 1))
    msgs = await Walk(client, young, young_id).ask_conditions(pension)
    assert "暂不符合" in text_of(msgs) and "未满60周岁" in text_of(msgs)
    assert not any(b["title"] == "一键申报" for m in msgs for b in m.get("buttons") or ())
    assert (await client.get(APPS, headers=young)).json()["applications"] == []


def test_a_typed_number_answers_a_number_question_only_when_it_is_one() -> None:
    from bot.walkthrough import _typed_answer

    q = {"key": "rule:income", "text": "请直接输入家庭人均月收入（数字）：", "options": [], "number": True}
    assert _typed_answer("1200.5", q) == "1200.5"
    assert _typed_answer("NaN", q) is None and _typed_answer("Infinity", q) is None
    assert _typed_answer("一千二", q) is None
    yes_no = {"key": "rule:hukou", "options": [{"title": "是，亳州市户籍", "value": "yes"}]}
    assert _typed_answer("是的。", yes_no) == "yes" and _typed_answer("不是", yes_no) is None


async def test_an_item_without_rules_asks_its_listed_conditions(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    headers, account_id = await verified_resident(client, login, dt.date(1992, 2, 2))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions("居住证办理")
    assert "（1/5）您是否符合这一条件：在本市居住半年以上？" in text_of(msgs)
    msgs = await walk.tap(msgs, "符合")
    msgs = await walk.say("符合")
    msgs = await walk.tap(msgs, "是")  # 以住所条件申请的
    msgs = await walk.tap(msgs, "不是")  # 以就业条件申请的
    done = await walk.tap(msgs, "不是")  # 以就读条件申请的
    verdict = text_of(done)
    # Declared, not checked: a reviewer confirms them, and the resident is told so.
    assert "以下几项将由工作人员审核" in verdict and "在本市居住半年以上：根据您的回答，符合" in verdict
    needed = verdict.split("需要准备")[1]
    assert "合法稳定住所证明" in needed and "就业证明" not in needed and "就读证明" not in needed
    assert link_of(done).startswith("wojia://bot/drafts/")

    msgs = await walk.ask_conditions("居住证办理")
    msgs = await walk.tap(msgs, "不符合")
    for _ in range(4):
        msgs = await walk.say("不是" if "情况" in text_of(msgs) else "不确定")
    assert "暂不符合" in text_of(msgs) and "在本市居住半年以上：根据您的回答，不符合" in text_of(msgs)


@pytest.mark.rasa
@pytest.mark.slow
async def test_through_the_trained_model_the_elderly_card_walkthrough_ends_in_a_draft(
    client: httpx.AsyncClient, login: Any, rasa_url_configured: str
) -> None:
    """The resident asks in their own words; Rasa reads ask_conditions and calls the webhook, which
    starts the walk-through; the answers never reach the model."""
    headers, account_id = await verified_resident(client, login, dt.date(1951, 10, 1))
    walk = Walk(client, headers, account_id)
    msgs = await walk.say("老年证需要什么条件")
    said = text_of(msgs)
    assert "户籍是否在亳州市" in said and "年满60周岁？" not in said
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.say("不是")
    assert "已满60周岁" in text_of(done)
    app_id = link_of(done).rsplit("/", 1)[1]
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).json()["status"] == "draft"
    # A new question after it is the model's again, about the item talked about.
    assert "老年人优待证办理" in text_of(await walk.say("老年证要带什么材料"))


def _years_ago(years: int) -> dt.date:
    """A birth date well inside the year of age (no birthday near today)."""
    today = dt.date.today()
    return today.replace(year=today.year - years, day=1) - dt.timedelta(days=40)


# 老年证 with each rule linked to the listed condition it checks ("condition": n), as the seed entry
# has it, imported under its own code and name (an administrator's links work the same).
LINKED_CODE = "BZ-BOT-902"
LINKED_NAME = "银龄优待卡办理"
LINKED_CONDITIONS = ["申请人年满60周岁", "本市户籍，或持有本市居住证的非本市户籍老年人"]


async def import_linked_elderly_card(client: httpx.AsyncClient, login: Any) -> None:
    """A copy of 老年人优待证办理 whose two rules name the listed conditions they check, through the
    administrators' catalogue import."""
    import csv
    import io

    admin = await login(roles=["admin"])
    api = "/api/v1/columns/gov_services/admin/catalogue"
    r = await client.get(f"{api}/export", params={"format": "csv"}, headers=admin)
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header = rows[0]
    col = header.index
    row = next(list(x) for x in rows[1:] if x[col("事项编码")] == "BZ-MZ-001")
    rules = [json.loads(line) for line in row[col("条件规则")].splitlines()]
    assert [r["id"] for r in rules] == ["age", "hukou"]
    for rule, n in zip(rules, (1, 2), strict=True):
        rule["condition"] = n
    row[col("事项编码")] = LINKED_CODE
    row[col("事项名称")] = LINKED_NAME
    row[col("同义词")] = ""
    row[col("关键词")] = ""
    row[col("受理条件")] = "\n".join(LINKED_CONDITIONS)
    row[col("条件规则")] = "\n".join(json.dumps(r, ensure_ascii=False) for r in rules)
    out = io.StringIO()
    csv.writer(out).writerows([header, row])
    r = await client.post(
        f"{api}/import", files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")}, headers=admin
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("item", [ELDERLY_CARD, LINKED_NAME], ids=["seed entry", "imported with the links"])
async def test_the_elderly_card_verdict_names_the_age_condition_it_decides(
    client: httpx.AsyncClient, login: Any, no_rasa: None, item: str
) -> None:
    await import_linked_elderly_card(client, login)
    # 38: the age from the registry decides the first listed condition against them, no draft.
    headers, account_id = await verified_resident(client, login, _years_ago(38))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions(item)
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.say("不是")
    verdict = text_of(done)
    assert f"您暂不符合“{item}”的申请条件" in verdict
    assert "✘ 申请人须年满60周岁：您今年38周岁，未满60周岁（受理条件第1条：申请人年满60周岁）" in verdict
    assert "需工作人员审核" not in verdict  # both listed conditions are checked by a rule
    assert not any(b["title"] == "一键申报" for m in done for b in m.get("buttons") or ())

    # 65: the same condition is met, and said to be.
    headers, account_id = await verified_resident(client, login, _years_ago(65))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions(item)
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.say("不是")
    verdict = text_of(done)
    assert f"您符合“{item}”的申请条件" in verdict
    assert "✔ 申请人须年满60周岁：您今年65周岁，已满60周岁（受理条件第1条：申请人年满60周岁）" in verdict
    assert "草稿保留24小时" in verdict
    assert link_of(done).startswith("wojia://bot/drafts/")

    # Not of the city: the household condition (the second) is a soft rule: a reviewer decides.
    msgs = await walk.ask_conditions(item)
    msgs = await walk.tap(msgs, "不是亳州市户籍")
    verdict = text_of(await walk.tap(msgs, "不是"))
    assert "以下几项将由工作人员审核" in verdict and "（受理条件第2条：" in verdict
    assert "居住证" in verdict.split("需要准备")[1]


async def _elderly_draft(client: httpx.AsyncClient, login: Any) -> tuple[dict[str, str], str, str]:
    headers, account_id = await verified_resident(client, login, _years_ago(70))
    walk = Walk(client, headers, account_id)
    msgs = await walk.ask_conditions(ELDERLY_CARD)
    msgs = await walk.tap(msgs, "是，亳州市户籍")
    done = await walk.say("不是")
    return headers, account_id, link_of(done).rsplit("/", 1)[1]


DRAFTS = "/api/v1/bot/drafts"


async def test_a_walkthrough_draft_nobody_opens_expires_once_and_its_link_says_so(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    import asyncio

    from sqlmodel import col, select

    from app_api.core.redis import get_redis
    from bot import drafts
    from bot.models import BotWalkthroughDraft
    from bot.tasks import expire_walkthrough_drafts

    headers, _, app_id = await _elderly_draft(client, login)
    async with session_scope() as s:
        row = await s.get(BotWalkthroughDraft, app_id)
        assert row is not None and row.expires_at is not None
        left = row.expires_at - dt.datetime.now(dt.UTC)
        assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)
    # Before its time the sweep leaves it alone; the resident still has it.
    assert (await drafts.sweep())["removed"] == 0
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).json()["status"] == "draft"

    # A day later, Redis wiped, two schedulers' sweeps at once: removed once.
    await (await get_redis()).flushdb()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=24, minutes=1)
    async with session_scope() as s:  # other tests' drafts are due as well
        due = (
            await s.exec(
                select(BotWalkthroughDraft).where(
                    col(BotWalkthroughDraft.discarded_at).is_(None),
                    col(BotWalkthroughDraft.expires_at) <= later,
                )
            )
        ).all()
    both = await asyncio.gather(drafts.sweep(later), drafts.sweep(later))
    assert sum(c["removed"] + c["kept"] + c["gone"] for c in both) == len(due)  # each handled once
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).status_code == 404
    assert app_id not in json.dumps((await client.get(APPS, headers=headers)).json())
    # Run again (the scheduled job itself): nothing more to do.
    assert (await expire_walkthrough_drafts())["removed"] == 0

    r = await client.get(f"{DRAFTS}/{app_id}", headers=headers)
    assert r.status_code == 410 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["code"] == "bot.draft_expired" and problem["title"] == "这份申请草稿已过期"
    assert "再问一次智能助手" in problem["detail"]
    # Someone else's link, or a made-up one: not found, nothing said about the draft.
    other = await login(level=3)
    assert (await client.get(f"{DRAFTS}/{app_id}", headers=other)).json()["code"] == "bot.draft_not_found"
    assert (await client.get(f"{DRAFTS}/nosuchdraft", headers=headers)).status_code == 404
    assert (await client.get(f"{DRAFTS}/{app_id}")).status_code == 401


async def test_a_walkthrough_draft_opened_or_taken_up_in_time_stays(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    from bot import drafts

    # Opened through the deep link: the application to go to, and no expiry any more.
    headers, _, app_id = await _elderly_draft(client, login)
    r = await client.get(f"{DRAFTS}/{app_id}", headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["deep_link"] == f"wojia://columns/gov_services/applications/{app_id}"
    assert (await client.get(f"{DRAFTS}/{app_id}", headers=headers)).status_code == 200  # again: same

    # Taken up in the app without the link (a field filled): kept too.
    headers2, _, app2 = await _elderly_draft(client, login)
    r = await client.put(
        f"{APPS}/{app2}/fields", json={"fields": {"applicant.note": "周末方便联系"}}, headers=headers2
    )
    assert r.status_code == 200, r.text

    # Neither: removed. Two days later, only the untouched one is gone.
    headers3, _, app3 = await _elderly_draft(client, login)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    await drafts.sweep(later)
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).json()["status"] == "draft"
    assert (await client.get(f"{APPS}/{app2}", headers=headers2)).json()["status"] == "draft"
    assert (await client.get(f"{APPS}/{app3}", headers=headers3)).status_code == 404
    assert (await client.get(f"{DRAFTS}/{app2}", headers=headers2)).status_code == 200
    # Tombstones are purged after a while: then the link is simply not found.
    await drafts.sweep(later + dt.timedelta(days=drafts.TOMBSTONE_DAYS + 1))
    assert (await client.get(f"{DRAFTS}/{app3}", headers=headers3)).json()["code"] == "bot.draft_not_found"


async def test_a_draft_past_its_time_is_expired_when_opened_before_the_sweep(
    client: httpx.AsyncClient, login: Any, no_rasa: None
) -> None:
    from bot.models import BotWalkthroughDraft

    headers, _, app_id = await _elderly_draft(client, login)
    async with session_scope() as s:
        row = await s.get(BotWalkthroughDraft, app_id)
        assert row is not None
        row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        s.add(row)
    r = await client.get(f"{DRAFTS}/{app_id}", headers=headers)
    assert r.status_code == 410 and r.json()["code"] == "bot.draft_expired"
    assert (await client.get(f"{APPS}/{app_id}", headers=headers)).status_code == 404


def test_the_expiry_sweep_is_a_scheduled_job() -> None:
    from app_api.core.jobs.schedules import declared

    assert any(s.task_name == "bot.expire_walkthrough_drafts" for s in declared())
