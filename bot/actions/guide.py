"""Answers about one catalogue item: materials, fee, time limit, where to go, online, conditions.

Each takes the item's guide as :meth:`bot.sources.Sources.item` returns it; elderly mode gives the
short form (fewer entries, no statutory limit, phone or office hours).
"""

from __future__ import annotations

from typing import Any

from app_api.core.money import yuan_text
from bot.actions.call import Call, intent_of, intent_payload

ASPECT_INTENTS = {
    "ask_materials": "materials",
    "ask_fee": "fee",
    "ask_time_limit": "time_limit",
    "ask_location": "location",
    "ask_online": "online",
    "ask_conditions": "conditions",
}


def aspect(call: Call) -> str:
    """What the resident asked about: the latest ask_* intent in the conversation, else an overview.

    A bare item name after "多少钱？" (the form asked which item) answers the fee; "那居住证呢"
    after a fee question also answers the fee.
    """
    for e in reversed(call.user_events()):
        name = intent_of(e)
        if name in ASPECT_INTENTS:
            return ASPECT_INTENTS[name]
        if name not in ("inform", None):
            break
    return "overview"


def materials(call: Call, item: dict[str, Any]) -> str:
    name = item.get("name")
    lines: list[str] = []
    for m in item.get("materials") or ():
        text = str(m.get("name"))
        extra: list[str] = []
        if m.get("condition"):
            extra.append(f"{m['condition']}提供")
        elif not m.get("required", True):
            extra.append("如有")
        if m.get("ecert"):
            extra.append("可用电子证照代替")
        elif m.get("auto_filled"):
            extra.append("授权后自动填写")
        lines.append(text + (f"（{'，'.join(extra)}）" if extra else ""))
    if not lines:
        return f"办理“{name}”不需要提交材料。"
    shown, left = call.short(lines)
    body = "\n".join(f"{i}. {t}" for i, t in enumerate(shown, 1))
    more = f"\n还有{left}项，点“查看办事指南”看全部。" if left else ""
    return f"办理“{name}”需要准备：\n{body}{more}"


def _days(item: dict[str, Any], name: str) -> int:
    return int((item.get("time_limit") or {}).get(name) or 0)


def fee(item: dict[str, Any]) -> str:
    charge = item.get("fee") or {}
    fen = int(charge.get("fee_fen") or 0)
    name = item.get("name")
    if fen == 0:
        return f"“{name}”不收费。"
    basis = charge.get("basis")
    return f"“{name}”收费{yuan_text(fen)}元" + (f"（依据：{basis}）。" if basis else "。")


def time_limit(call: Call, item: dict[str, Any]) -> str:
    name = item.get("name")
    promised = _days(item, "promised_days")
    statutory = _days(item, "statutory_days")
    if promised == 0:
        text = f"“{name}”是即办件，材料齐全当场办结。"
    else:
        text = f"“{name}”承诺{promised}个工作日内办结。"
    if not call.elderly and statutory > promised:
        text += f"（法定时限{statutory}个工作日）"
    return text


def where(call: Call, item: dict[str, Any]) -> str:
    name = item.get("name")
    if item.get("handling_mode") == "全程网办":
        return f"“{name}”可以全程网上办，不用跑腿：在“我家”App里提交申请即可。"
    place = item.get("where_to_go") or item.get("department")
    text = f"“{name}”办理地点：{place}"
    if item.get("office_hours") and not call.elderly:
        text += f"，办公时间：{item['office_hours']}"
    text += "。"
    phone = item.get("phone")
    if not call.elderly and phone:
        text += f"咨询电话：{phone}。"
    return text


def online(call: Call, item: dict[str, Any]) -> str:
    name = item.get("name")
    mode = item.get("handling_mode")
    visits = int(item.get("max_visits") or 0)
    delivery = "、".join(item.get("delivery") or ())
    if mode == "全程网办":
        text = f"可以。“{name}”全程网办，一次都不用跑。"
    elif mode == "在线预约":
        text = f"“{name}”可以在线预约并提交材料，但需要到现场{visits}次（{item.get('where_to_go')}）。"
    else:
        text = f"“{name}”可以网上申请，最多跑{max(visits, 1)}次（{item.get('where_to_go')}）。"
    if delivery and not call.elderly:
        text += f"办理结果：{delivery}。"
    return text


def conditions(call: Call, item: dict[str, Any]) -> str:
    name = item.get("name")
    listed = [str(c) for c in item.get("conditions") or ()]
    shown, left = call.short(listed)
    body = "\n".join(f"{i}. {c}" for i, c in enumerate(shown, 1))
    who = "、".join(item.get("applicants") or ())
    text = f"“{name}”的申请条件：\n{body}"
    if left:
        text += f"\n还有{left}条，点“查看办事指南”看全部。"
    if who and not call.elderly:
        text += f"\n申请对象：{who}。"
    return text


def overview(call: Call, item: dict[str, Any]) -> str:
    summary = str(item.get("summary") or "")
    if call.elderly and len(summary) > 40:
        summary = summary.split("，")[0] + "。"
    parts = [f"“{item.get('name')}”：{summary}"] if summary else [f"“{item.get('name')}”"]
    parts.append(fee(item))
    parts.append(time_limit(call, item))
    if not call.elderly:
        parts.append("全程网办。" if item.get("handling_mode") == "全程网办" else where(call, item))
    return "\n".join(parts)


def answer(call: Call, item: dict[str, Any], asked: str) -> str:
    """The answer about ``item`` for the aspect :func:`aspect` found."""
    if asked == "materials":
        return materials(call, item)
    if asked == "fee":
        return fee(item)
    if asked == "time_limit":
        return time_limit(call, item)
    if asked == "location":
        return where(call, item)
    if asked == "online":
        return online(call, item)
    if asked == "conditions":
        return conditions(call, item)
    return overview(call, item)


def item_buttons(item: dict[str, Any], asked: str) -> list[tuple[str, str]]:
    """Apply now, and the other questions about the same item."""
    name = str(item.get("name"))
    options = [
        ("materials", "要带什么材料", "ask_materials"),
        ("fee", "要多少钱", "ask_fee"),
        ("time_limit", "多久办好", "ask_time_limit"),
        ("location", "在哪里办", "ask_location"),
    ]
    buttons = [("立即申请", intent_payload("start_application", item=name))]
    buttons += [(title, intent_payload(intent, item=name)) for key, title, intent in options if key != asked]
    return buttons
