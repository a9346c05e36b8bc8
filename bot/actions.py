"""The assistant's custom actions, served by the app itself (Rasa's action-server protocol).

Rasa POSTs ``{next_action, sender_id, tracker, domain, version}``; an action answers
``{"events": [...], "responses": [...]}`` or rejects with :class:`Rejected` (HTTP 400
``{"action_name", "error"}``), which lets Rasa's policies pick another action (form validation).

Everything a resident is told comes from the live catalogue and records (:mod:`bot.sources`).
The resident behind a conversation is taken from the message metadata the chat endpoint attached,
and only after checking it against the sender id (an HMAC of the account id): a conversation can
never read another account's records.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

from bot.config import BotSettings
from bot.sender import account_sender_id
from bot.sources import Sources, field

log = logging.getLogger(__name__)

ASPECT_INTENTS = {
    "ask_materials": "materials",
    "ask_fee": "fee",
    "ask_time_limit": "time_limit",
    "ask_location": "location",
    "ask_online": "online",
    "ask_conditions": "conditions",
}
FAILURE_INTENTS = {"out_of_scope", "nlu_fallback"}
# Intents that mean "not an answer to the form's question": the form's validation rejects them so
# the rules can answer them (and then the form asks again).
OFF_FORM_INTENTS = {
    "stop",
    "out_of_scope",
    "nlu_fallback",
    "chitchat",
    "complain",
    "bot_challenge",
    "ask_human",
    "goodbye",
    "greet",
    "thank",
}
# Catalogue search scores (0-100): exact names and synonyms score 90-99, keywords 85-95,
# near misses 60-80. At SURE_SCORE a hit is the item the resident named; hits within AMBIGUOUS of
# each other are offered as a choice (公积金提取 → three kinds); from MAYBE_SCORE a hit is offered.
SURE_SCORE = 85.0
AMBIGUOUS = 6.0
MAYBE_SCORE = 80.0
# A resident's sentence describing a need: the whole sentence matches from SENTENCE_SCORE, a phrase
# inside it (小吃, 开…店) only as an exact keyword, from PHRASE_SCORE.
SENTENCE_SCORE = 70.0
PHRASE_SCORE = 85.0
# Characters of phrasing, not of needs: a phrase with any of them in it is not searched.
_FILLER_CHARS = set("我你他俺要想办什么哪些的了吗呢啊吧个一家请问需可以能怎么去在有是这那给帮做该些啥")
_FILLER_CHARS |= set("准备打算刚手续事情")


class Rejected(Exception):
    """The action refuses to run (Rasa then lets its policies choose another action)."""

    def __init__(self, action_name: str, error: str) -> None:
        super().__init__(error)
        self.action_name = action_name
        self.error = error


@dataclass
class Call:
    """One action call: the tracker as Rasa sent it, plus who is asking."""

    name: str
    tracker: dict[str, Any]
    domain: dict[str, Any]
    sources: Sources
    settings: BotSettings
    account_id: str | None = None
    elderly: bool = False
    events: list[dict[str, Any]] = dc_field(default_factory=list)
    responses: list[dict[str, Any]] = dc_field(default_factory=list)

    # --- reading the tracker ---------------------------------------------------------------
    def slot(self, name: str) -> Any:
        return (self.tracker.get("slots") or {}).get(name)

    @property
    def latest(self) -> dict[str, Any]:
        return self.tracker.get("latest_message") or {}

    @property
    def intent(self) -> str | None:
        return (self.latest.get("intent") or {}).get("name")

    @property
    def text(self) -> str:
        return str(self.latest.get("text") or "")

    @property
    def active_loop(self) -> str | None:
        return (self.tracker.get("active_loop") or {}).get("name")

    def user_events(self) -> list[dict[str, Any]]:
        return [e for e in self.tracker.get("events") or [] if e.get("event") == "user"]

    # --- answering -------------------------------------------------------------------------
    def say(self, text: str, buttons: list[tuple[str, str]] | None = None) -> None:
        msg: dict[str, Any] = {"text": text}
        if buttons:
            limit = self.settings.elderly_max_entries if self.elderly else 5
            msg["buttons"] = [{"title": t, "payload": p} for t, p in buttons[:limit]]
        self.responses.append(msg)

    def utter(self, response: str) -> None:
        self.responses.append({"response": response})

    def set_slot(self, name: str, value: Any) -> None:
        self.events.append({"event": "slot", "timestamp": None, "name": name, "value": value})

    def short(self, entries: list[str]) -> tuple[list[str], int]:
        """Elderly mode keeps the first few entries; returns them and how many were left out."""
        if not self.elderly or len(entries) <= self.settings.elderly_max_entries:
            return entries, 0
        n = self.settings.elderly_max_entries
        return entries[:n], len(entries) - n


def intent_payload(intent: str, **entities: str) -> str:
    """A button payload Rasa parses without NLU: ``/intent{"entity": "value"}``."""
    return f"/{intent}" + (json.dumps(entities, ensure_ascii=False) if entities else "")


def yuan(fen: int) -> str:
    return f"{fen // 100}" if fen % 100 == 0 else f"{fen / 100:.2f}"


# ------------------------------------------------------------------------------------------------
# Resolving what the resident called an item to one catalogue item
# ------------------------------------------------------------------------------------------------
@dataclass
class Resolution:
    item: Any | None = None
    candidates: list[Any] = dc_field(default_factory=list)


async def resolve(call: Call, name: str | None) -> Resolution:
    if not name:
        return Resolution()
    hits = await call.sources.search(str(name), limit=5)
    if not hits:
        return Resolution()
    top = hits[0]
    exact = [h for h in hits if field(h, "name") == name]
    if exact:
        top = exact[0]
    else:
        best = float(field(top, "score", 0))
        close = [h for h in hits if float(field(h, "score", 0)) >= max(SURE_SCORE, best - AMBIGUOUS)]
        if len(close) > 1:
            return Resolution(candidates=close)
        if best < MAYBE_SCORE:
            return Resolution()
        if best < SURE_SCORE:
            return Resolution(candidates=[top])
    item = await call.sources.item(str(field(top, "code")))
    return Resolution(item=item) if item is not None else Resolution()


def _which_buttons(candidates: list[Any]) -> list[tuple[str, str]]:
    return [(str(field(c, "name")), intent_payload("inform", item=str(field(c, "name")))) for c in candidates]


async def _not_found(call: Call, name: str | None, res: Resolution) -> None:
    if not call.sources.catalogue_available:
        call.say(f"事项目录暂时无法查询，请稍后再试，或拨打 {call.settings.hotline} 热线咨询。")
    elif res.candidates:
        call.say(f"您说的“{name}”可能是下面几个事项，请选一个：", _which_buttons(res.candidates))
    else:
        call.say(f"抱歉，事项目录里没有找到“{name}”。可以换个说法，比如“老年证”“居住证”“营业执照”。")


# ------------------------------------------------------------------------------------------------
# Answers about one item
# ------------------------------------------------------------------------------------------------
def _aspect(call: Call) -> str:
    """What the resident asked about: the latest ask_* intent in the conversation, else an overview.

    A bare item name after "多少钱？" (the form asked which item) answers the fee; "那居住证呢"
    after a fee question also answers the fee.
    """
    for e in reversed(call.user_events()):
        name = ((e.get("parse_data") or {}).get("intent") or {}).get("name")
        if name in ASPECT_INTENTS:
            return ASPECT_INTENTS[name]
        if name not in ("inform", None):
            break
    return "overview"


def _materials(call: Call, item: Any) -> str:
    name = field(item, "name")
    lines: list[str] = []
    for m in field(item, "materials", ()) or ():
        text = str(field(m, "name"))
        extra: list[str] = []
        if field(m, "condition"):
            extra.append(f"{field(m, 'condition')}提供")
        elif not field(m, "required", True):
            extra.append("如有")
        if field(m, "ecert"):
            extra.append("可用电子证照代替")
        elif field(m, "auto_filled") or field(m, "fill_fields"):
            extra.append("授权后自动填写")
        lines.append(text + (f"（{'，'.join(extra)}）" if extra else ""))
    if not lines:
        return f"办理“{name}”不需要提交材料。"
    shown, left = call.short(lines)
    body = "\n".join(f"{i}. {t}" for i, t in enumerate(shown, 1))
    more = f"\n还有{left}项，点“查看办事指南”看全部。" if left else ""
    return f"办理“{name}”需要准备：\n{body}{more}"


def _fee_fen(item: Any) -> int:
    fee = field(item, "fee")
    return int((field(fee, "fee_fen") if fee is not None else field(item, "fee_fen", 0)) or 0)


def _days(item: Any, name: str) -> int:
    limits = field(item, "time_limit")
    return int((field(limits, name) if limits is not None else field(item, name, 0)) or 0)


def _fee(item: Any) -> str:
    fen = _fee_fen(item)
    name = field(item, "name")
    if fen == 0:
        return f"“{name}”不收费。"
    fee = field(item, "fee")
    basis = field(fee, "basis") if fee is not None else field(item, "fee_basis")
    return f"“{name}”收费{yuan(fen)}元" + (f"（依据：{basis}）。" if basis else "。")


def _time_limit(call: Call, item: Any) -> str:
    name = field(item, "name")
    promised = _days(item, "promised_days")
    statutory = _days(item, "statutory_days")
    if promised == 0:
        text = f"“{name}”是即办件，材料齐全当场办结。"
    else:
        text = f"“{name}”承诺{promised}个工作日内办结。"
    if not call.elderly and statutory > promised:
        text += f"（法定时限{statutory}个工作日）"
    return text


def _where(call: Call, item: Any) -> str:
    name = field(item, "name")
    mode = field(item, "handling_mode")
    if mode == "全程网办":
        return f"“{name}”可以全程网上办，不用跑腿：在“我家”App里提交申请即可。"
    where = field(item, "where_to_go") or field(item, "department")
    text = f"“{name}”办理地点：{where}"
    if field(item, "office_hours") and not call.elderly:
        text += f"，办公时间：{field(item, 'office_hours')}"
    text += "。"
    phone = field(item, "phone") or field(item, "consult_phone")
    if not call.elderly and phone:
        text += f"咨询电话：{phone}。"
    return text


def _online(call: Call, item: Any) -> str:
    name = field(item, "name")
    mode = field(item, "handling_mode")
    visits = int(field(item, "max_visits", 0) or 0)
    delivery = "、".join(field(item, "delivery", ()) or ())
    if mode == "全程网办":
        text = f"可以。“{name}”全程网办，一次都不用跑。"
    elif mode == "在线预约":
        text = f"“{name}”可以在线预约并提交材料，但需要到现场{visits}次（{field(item, 'where_to_go')}）。"
    else:
        text = f"“{name}”可以网上申请，最多跑{max(visits, 1)}次（{field(item, 'where_to_go')}）。"
    if delivery and not call.elderly:
        text += f"办理结果：{delivery}。"
    return text


def _conditions(call: Call, item: Any) -> str:
    name = field(item, "name")
    conditions = [str(c) for c in field(item, "conditions", ()) or ()]
    shown, left = call.short(conditions)
    body = "\n".join(f"{i}. {c}" for i, c in enumerate(shown, 1))
    who = "、".join(field(item, "applicants", ()) or ())
    text = f"“{name}”的申请条件：\n{body}"
    if left:
        text += f"\n还有{left}条，点“查看办事指南”看全部。"
    if who and not call.elderly:
        text += f"\n申请对象：{who}。"
    return text


def _overview(call: Call, item: Any) -> str:
    summary = str(field(item, "summary") or "")
    if call.elderly and len(summary) > 40:
        summary = summary.split("，")[0] + "。"
    parts = [f"“{field(item, 'name')}”：{summary}"] if summary else [f"“{field(item, 'name')}”"]
    parts.append(_fee(item))
    parts.append(_time_limit(call, item))
    if not call.elderly:
        parts.append("全程网办。" if field(item, "handling_mode") == "全程网办" else _where(call, item))
    return "\n".join(parts)


def _item_buttons(call: Call, item: Any, asked: str) -> list[tuple[str, str]]:
    name = str(field(item, "name"))
    options = [
        ("materials", "要带什么材料", "ask_materials"),
        ("fee", "要多少钱", "ask_fee"),
        ("time_limit", "多久办好", "ask_time_limit"),
        ("location", "在哪里办", "ask_location"),
    ]
    buttons = [("立即申请", intent_payload("start_application", item=name))]
    buttons += [(title, intent_payload(intent, item=name)) for key, title, intent in options if key != asked]
    return buttons


async def action_answer_item(call: Call) -> None:
    name = call.slot("item")
    res = await resolve(call, name)
    if res.item is None:
        await _not_found(call, name, res)
        call.set_slot("item", None)
        return
    item = res.item
    aspect = _aspect(call)
    text = {
        "materials": lambda: _materials(call, item),
        "fee": lambda: _fee(item),
        "time_limit": lambda: _time_limit(call, item),
        "location": lambda: _where(call, item),
        "online": lambda: _online(call, item),
        "conditions": lambda: _conditions(call, item),
        "overview": lambda: _overview(call, item),
    }[aspect]()
    call.say(text, _item_buttons(call, item, aspect))
    call.set_slot("item", field(item, "name"))


async def action_ask_item(call: Call) -> None:
    if call.active_loop == "application_form":
        call.say("请问您要申请哪个事项？直接说名称就行，比如“老年证”。")
    else:
        call.say("请问您想了解哪个事项？可以直接说名称，比如“老年证”“居住证”“营业执照”。")


async def action_ask_application_form_confirm(call: Call) -> None:
    res = await resolve(call, call.slot("item"))
    name = field(res.item, "name") if res.item is not None else call.slot("item")
    call.say(f"确认为您发起“{name}”的申请吗？", [("确认申请", "/affirm"), ("不用了", "/deny")])


async def _validate_item_form(call: Call) -> None:
    """Validate the slots the resident just gave (``SlotSet`` events after the form's own action)."""
    candidates: dict[str, Any] = {}
    for e in reversed(call.tracker.get("events") or []):
        if e.get("event") == "slot":
            candidates.setdefault(e["name"], e.get("value"))
        elif e.get("event") in ("action", "user"):
            break
    requested = call.slot("requested_slot")
    if requested and requested not in candidates and call.intent in OFF_FORM_INTENTS:
        raise Rejected(call.name, f"{call.intent} does not answer {requested}")
    if candidates.get("item"):
        name = str(candidates["item"])
        res = await resolve(call, name)
        if res.item is None:
            await _not_found(call, name, res)
            call.set_slot("item", None)
        else:
            call.set_slot("item", field(res.item, "name"))
    if "confirm" in candidates:
        call.set_slot("confirm", candidates["confirm"])


async def validate_item_question_form(call: Call) -> None:
    await _validate_item_form(call)


async def validate_application_form(call: Call) -> None:
    await _validate_item_form(call)


async def action_start_application(call: Call) -> None:
    confirmed = call.slot("confirm")
    call.set_slot("confirm", None)
    if not confirmed:
        call.say("好的，已取消，没有为您提交申请。还有别的需要可以随时问我。")
        return
    res = await resolve(call, call.slot("item"))
    if res.item is None:
        await _not_found(call, call.slot("item"), res)
        call.set_slot("item", None)
        return
    item = res.item
    name, code = field(item, "name"), field(item, "code")
    link = field(field(item, "start") or {}, "deep_link") or call.settings.apply_link.format(code=code)
    if call.account_id is None:
        call.say(
            f"申请“{name}”需要先登录。登录后点“立即申请”，系统会自动带出您的信息。",
            [("去登录", call.settings.login_link), ("立即申请", link)],
        )
        return
    level = int(field(item, "identity_level", 0) or 0)
    text = f"好的，请点下面的“一键申报”进入“{name}”的申请页面，您授权后系统会自动填好个人信息。"
    if level >= 3:
        text += "这个事项需要刷脸实名认证。"
    call.say(text, [("一键申报", link)])


async def action_find_item(call: Call) -> None:
    if not call.sources.catalogue_available:
        await _not_found(call, call.text, Resolution())
        return
    hits = await match_need(call.sources, call.text)
    if not hits:
        call.say("抱歉，我没找到和您说的情况对应的事项。能说得具体一点吗？比如“我要开个小吃店”“孩子刚出生”。")
        return
    names = [str(field(h, "name")) for h in hits]
    shown, _ = call.short(names)
    body = "\n".join(f"{i}. {n}" for i, n in enumerate(shown, 1))
    call.say(
        f"根据您说的情况，可能需要办理：\n{body}\n点一个看办事指南。",
        [(n, intent_payload("inform", item=n)) for n in shown],
    )


def _phrases(text: str) -> list[str]:
    """Phrases of a sentence to look up as keywords: 2-4 character runs, and the two ends of 3-6
    character runs (开个小吃店 → 开店), skipping any with a character of phrasing in it."""
    out: list[str] = []
    for run in re.findall(r"[\u4e00-\u9fff]+", text):
        for n in range(2, 5):
            out += [run[i : i + n] for i in range(len(run) - n + 1)]
        for n in range(3, 7):
            out += [run[i] + run[i + n - 1] for i in range(len(run) - n + 1)]
    seen: set[str] = set()
    phrases: list[str] = []
    for p in out:
        if p not in seen and not set(p) & _FILLER_CHARS:
            seen.add(p)
            phrases.append(p)
    return phrases


async def match_need(sources: Sources, text: str, limit: int = 5) -> list[Any]:
    """Items that fit a need told in a sentence (我要开个小吃店 → 个体工商户设立登记, 食品经营许可)."""
    best: dict[str, tuple[float, Any]] = {}

    def offer(hit: Any, floor: float) -> None:
        score = float(field(hit, "score", 0))
        code = str(field(hit, "code"))
        if score >= floor and (code not in best or best[code][0] < score):
            best[code] = (score, hit)

    for hit in await sources.search(text, limit=limit):
        offer(hit, SENTENCE_SCORE)
    for phrase in _phrases(text):
        for hit in await sources.search(phrase, limit=3):
            offer(hit, PHRASE_SCORE)
    ranked = sorted(best.values(), key=lambda sh: -sh[0])
    return [hit for _, hit in ranked[:limit]]


def _need_login(call: Call, what: str) -> bool:
    if call.account_id is not None:
        return False
    call.say(f"查询{what}需要先登录“我家”App。", [("去登录", call.settings.login_link)])
    return True


async def action_application_status(call: Call) -> None:
    if _need_login(call, "办件进度"):
        return
    assert call.account_id is not None
    apps = await call.sources.applications(call.account_id, limit=5)
    if apps is None:
        call.say("办件进度暂时查不到，请稍后再试，或在“我的办件”里查看。")
        return
    if not apps:
        call.say("您还没有提交过申请。想办什么事，可以直接问我。")
        return
    lines = []
    for a in apps:
        status = field(a, "status_name") or field(a, "status")
        line = f"{field(a, 'item') or field(a, 'item_name')}：{status}"
        if field(a, "tracking_no"):
            line += f"（快递单号 {field(a, 'tracking_no')}）"
        lines.append(line)
    shown, left = call.short(lines)
    text = "您的办件：\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(shown, 1))
    if left:
        text += f"\n还有{left}件，在“我的办件”里查看。"
    call.say(text)


async def action_unpaid_bills(call: Call) -> None:
    if _need_login(call, "待缴账单"):
        return
    assert call.account_id is not None
    bills = await call.sources.unpaid_bills(call.account_id)
    if bills is None:
        call.say("待缴账单暂时查不到，请稍后再试，或在“生活缴费”里查看。")
        return
    if not bills:
        call.say("您目前没有待缴的账单。")
        return
    lines = [
        f"{field(b, 'title') or field(b, 'biller')}：{yuan(int(field(b, 'amount_fen', 0)))}元" for b in bills
    ]
    total = sum(int(field(b, "amount_fen", 0)) for b in bills)
    shown, left = call.short(lines)
    text = f"您有{len(bills)}笔待缴账单，共{yuan(total)}元：\n" + "\n".join(shown)
    if left:
        text += f"\n还有{left}笔，在“生活缴费”里查看。"
    call.say(text)


async def action_nearest_station(call: Call) -> None:
    city = call.slot("city")
    stations = await call.sources.stations(city)
    if stations is None:
        call.say(f"代办点信息暂时查不到。您可以拨打 {call.settings.hotline} 热线，问离您最近的便民服务中心。")
        return
    if not stations:
        where = f"{city}" if city else "您附近"
        call.say(f"{where}暂时没有代办点。可以拨打 {call.settings.hotline} 热线咨询。")
        return
    lines = []
    for s in stations:
        line = f"{field(s, 'name')}：{field(s, 'address')}"
        if field(s, "phone"):
            line += f"，电话 {field(s, 'phone')}"
        lines.append(line)
    shown, _ = call.short(lines)
    call.say("离您近的代办点：\n" + "\n".join(shown))


async def action_handle_failure(call: Call) -> None:
    """Count failed turns in a row (off-topic or not understood); at two, hand off to the hotline."""
    failures = 0
    for e in reversed(call.user_events()):
        name = ((e.get("parse_data") or {}).get("intent") or {}).get("name")
        if name in FAILURE_INTENTS:
            failures += 1
        else:
            break
    if failures >= 2:
        call.utter("utter_handoff")


async def action_session_start(call: Call) -> None:
    call.events.append({"event": "session_started", "timestamp": None})
    call.set_slot("elderly", call.elderly)
    call.events.append({"event": "action", "timestamp": None, "name": "action_listen"})


ACTIONS: dict[str, Callable[[Call], Awaitable[None]]] = {
    f.__name__: f
    for f in (
        action_session_start,
        action_answer_item,
        action_ask_item,
        action_ask_application_form_confirm,
        validate_item_question_form,
        validate_application_form,
        action_start_application,
        action_find_item,
        action_application_status,
        action_unpaid_bills,
        action_nearest_station,
        action_handle_failure,
    )
}


def _who(tracker: dict[str, Any], settings: BotSettings) -> tuple[str | None, bool]:
    """The account and elderly flag the chat endpoint attached to the latest message, if genuine."""
    meta: dict[str, Any] = {}
    for e in reversed(tracker.get("events") or []):
        if e.get("event") == "user":
            meta = e.get("metadata") or {}
            break
    else:
        meta = (tracker.get("slots") or {}).get("session_started_metadata") or {}
    account_id = meta.get("account_id")
    sender = str(tracker.get("sender_id") or "")
    if account_id and account_sender_id(str(account_id), settings) != sender:
        log.warning("bot: account metadata does not match the sender id; treated as anonymous")
        account_id = None
    return (str(account_id) if account_id else None), bool(meta.get("elderly"))


async def run_action(body: dict[str, Any], sources: Sources, settings: BotSettings) -> dict[str, Any]:
    """Run one action for Rasa. Raises KeyError for an unknown action, Rejected to reject it."""
    name = str(body.get("next_action") or "")
    handler = ACTIONS[name]
    tracker = body.get("tracker") or {}
    account_id, elderly = _who(tracker, settings)
    call = Call(
        name=name,
        tracker=tracker,
        domain=body.get("domain") or {},
        sources=sources,
        settings=settings,
        account_id=account_id,
        elderly=elderly,
    )
    await handler(call)
    # Elderly mode can change mid-conversation. Not from validation actions: any SlotSet they
    # return counts as "the resident answered", which would stop Rasa rejecting the form.
    if not name.startswith(("validate_", "action_session_start")) and bool(call.slot("elderly")) != elderly:
        call.set_slot("elderly", elderly)
    return {"events": call.events, "responses": call.responses}
