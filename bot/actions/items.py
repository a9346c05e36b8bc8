"""Questions about one item and the one-tap application: the two forms and their actions."""

from __future__ import annotations

from typing import Any

from bot.actions import guide
from bot.actions.call import Call, Rejected, intent_of, intent_payload
from bot.actions.mention import mention_of
from bot.actions.resolve import Resolution, not_found, resolve

# An item talked about longer ago than this is not assumed by a question that names none: the
# assistant asks which item. A confirmation left unanswered this long has lapsed.
ITEM_TTL_S = 15 * 60
CONFIRM_TTL_S = 10 * 60
# At the confirmation step, intents that answer it; any other ends the form without applying
# (a new question is answered, action_start_application), except a new item named with
# start_application or inform, which changes the item to confirm.
CONFIRM_INTENTS = {"affirm", "deny"}
CHANGE_INTENTS = {"start_application", "inform"}

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


async def action_answer_item(call: Call) -> None:
    name = call.slot("item")
    res = await resolve(call, name)
    if res.item is None:
        not_found(call, name, res)
        call.set_slot("item", None)
        return
    item = res.item
    asked = guide.aspect(call)
    call.say(guide.answer(call, item, asked), guide.item_buttons(item, asked))
    call.set_slot("item", item.get("name"))


async def action_ask_item(call: Call) -> None:
    if call.active_loop == "application_form":
        call.say("请问您要申请哪个事项？直接说名称就行，比如“老年证”。")
    else:
        call.say("请问您想了解哪个事项？可以直接说名称，比如“老年证”“居住证”“营业执照”。")


async def action_ask_application_form_confirm(call: Call) -> None:
    res = await resolve(call, call.slot("item"))
    name = res.item.get("name") if res.item is not None else call.slot("item")
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
    mention = await mention_of(call)
    lapsed = requested == "confirm" and call.gap_s() > CONFIRM_TTL_S
    if requested == "confirm" and ("confirm" not in candidates or lapsed):
        if call.intent == "stop" and not lapsed:
            raise Rejected(call.name, "stop: the rule cancels the form")
        if not lapsed and call.intent in CHANGE_INTENTS and mention is not None:
            # A change of mind ("不，是居住证"): confirm the new item instead.
            _take(call, mention.name, mention.resolution)
            return
        # A new question, or a reply after a long silence: the form ends without applying and
        # action_start_application answers the message.
        call.set_slot("confirm", None)
        call.set_slot("requested_slot", None)
        return
    if requested and requested not in candidates and mention is None and call.intent in OFF_FORM_INTENTS:
        raise Rejected(call.name, f"{call.intent} does not answer {requested}")
    if mention is not None:
        # Named in this message (entity or text): replaces whatever item came before.
        _take(call, mention.name, mention.resolution)
    elif candidates.get("item"):
        if call.slot("requested_slot") is None and (call.gap_s() > ITEM_TTL_S or _topic_changed(call)):
            # Filled long ago, or before the talk moved to something else, and not named now: ask
            # which item rather than assume.
            call.set_slot("item", None)
        else:
            name = str(candidates["item"])
            _take(call, name, await resolve(call, name))
    if "confirm" in candidates:
        call.set_slot("confirm", candidates["confirm"])


# Turns about something other than one item: a question after one of them does not refer to the
# item talked about before it.
TOPIC_INTENTS = {"find_item", "application_status", "unpaid_bills", "nearest_station"}


def _topic_changed(call: Call) -> bool:
    users = call.user_events()
    return len(users) >= 2 and intent_of(users[-2]) in TOPIC_INTENTS


def _take(call: Call, name: str, res: Resolution) -> None:
    """The item slot from what the resident named: the item, or cleared (and said so)."""
    if res.item is None:
        not_found(call, name, res)
        call.set_slot("item", None)
    else:
        call.set_slot("item", res.item.get("name"))


async def validate_item_question_form(call: Call) -> None:
    await _validate_item_form(call)


async def validate_application_form(call: Call) -> None:
    await _validate_item_form(call)


# Intents answered by a response of the domain (as the rules answer them outside a form).
_UTTERANCES = {
    "greet": "utter_greet",
    "goodbye": "utter_goodbye",
    "thank": "utter_you_are_welcome",
    "bot_challenge": "utter_iamabot",
    "ask_human": "utter_handoff",
    "complain": "utter_complain",
    "chitchat": "utter_chitchat",
    "out_of_scope": "utter_out_of_scope",
    "nlu_fallback": "utter_default",
}


async def _moved_on(call: Call) -> None:
    """The resident left the confirmation unanswered (a new question, or back after a long silence):
    nothing is applied for; the new message is answered as it would be outside the form."""
    from bot.actions.needs import action_find_item
    from bot.actions.records import action_application_status, action_nearest_station, action_unpaid_bills

    pending = call.slot_before_latest("item")
    intent = call.intent or ""
    if intent == "affirm" and pending:
        call.say(
            f"刚才“{pending}”的申请确认已超时，没有为您提交。要申请的话请点“立即申请”。",
            [("立即申请", intent_payload("start_application", item=str(pending)))],
        )
        return
    if pending:
        call.say(f"好的，先不为您申请“{pending}”。")
    handlers = {
        "find_item": action_find_item,
        "application_status": action_application_status,
        "unpaid_bills": action_unpaid_bills,
        "nearest_station": action_nearest_station,
    }
    if intent in handlers:
        await handlers[intent](call)
    elif intent in _UTTERANCES:
        call.utter(_UTTERANCES[intent])
    elif intent in guide.ASPECT_INTENTS or intent in ("inform", "start_application"):
        mention = await mention_of(call)
        if mention is not None and mention.resolution.item is None:
            not_found(call, mention.name, mention.resolution)
            call.set_slot("item", None)
            return
        item = mention.resolution.item if mention is not None else (await resolve(call, pending)).item
        if item is None:
            await action_ask_item(call)
            return
        asked = guide.aspect(call) if intent != "start_application" else "overview"
        call.say(guide.answer(call, item, asked), guide.item_buttons(item, asked))
        call.set_slot("item", item.get("name"))
    elif not pending:
        call.say("好的，没有为您提交申请。还有别的需要可以随时问我。")


async def action_start_application(call: Call) -> None:
    confirmed = call.slot("confirm")
    call.set_slot("confirm", None)
    if confirmed is None:
        await _moved_on(call)
        return
    if not confirmed:
        call.say("好的，已取消，没有为您提交申请。还有别的需要可以随时问我。")
        return
    res = await resolve(call, call.slot("item"))
    if res.item is None:
        not_found(call, call.slot("item"), res)
        call.set_slot("item", None)
        return
    item = res.item
    name, code = item.get("name"), item.get("code")
    link = (item.get("start") or {}).get("deep_link") or call.settings.apply_link.format(code=code)
    if call.account_id is None:
        call.say(
            f"申请“{name}”需要先登录。登录后点“立即申请”，系统会自动带出您的信息。",
            [("去登录", call.settings.login_link), ("立即申请", link)],
        )
        return
    level = int(item.get("identity_level") or 0)
    text = f"好的，请点下面的“一键申报”进入“{name}”的申请页面，您授权后系统会自动填好个人信息。"
    if level >= 3:
        text += "这个事项需要刷脸实名认证。"
    call.say(text, [("一键申报", link)])
