"""Questions about one item and the one-tap application: the two forms and their actions."""

from __future__ import annotations

from typing import Any

from bot.actions import guide
from bot.actions.call import Call, Rejected
from bot.actions.resolve import not_found, resolve

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
    if requested and requested not in candidates and call.intent in OFF_FORM_INTENTS:
        raise Rejected(call.name, f"{call.intent} does not answer {requested}")
    if candidates.get("item"):
        name = str(candidates["item"])
        res = await resolve(call, name)
        if res.item is None:
            not_found(call, name, res)
            call.set_slot("item", None)
        else:
            call.set_slot("item", res.item.get("name"))
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
