"""Which item the resident's latest message names, if any: from the NLU's entity, else from the text.

The NLU model learnt item names from the catalogue as it was at training time. An item published
since (or renamed) is not extracted as an entity, and a mention the model misses must not leave the
previous item in place ("狗证要带什么材料" after talking about 老年证). So the message text itself is
looked at too: the question words are stripped and what is left is resolved against the live
catalogue search (Chinese, pinyin, typos), with the same confidence thresholds as an entity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.actions.call import Call
from bot.actions.resolve import Resolution, resolve

# Phrasing around an item name in a question, longest first. What is left once these are gone is
# the item the resident named (or nothing: "要多长时间能办好？").
_QUESTION_WORDS = sorted(
    {
        "要带什么材料", "需要什么材料", "要准备什么材料", "需要带什么", "要带什么", "带什么材料", "什么材料",
        "哪些材料", "需要哪些", "要哪些", "材料", "证件", "手续", "怎么办理", "怎么申请", "怎么弄", "怎么办",
        "怎么样", "怎样", "怎么", "如何办理", "如何", "要多少钱", "多少钱", "收费吗", "收不收费", "收费",
        "要钱吗", "费用", "免费", "多长时间", "要多久", "多久", "几天", "什么时候", "能办好", "办好", "办完",
        "办结", "在哪里办", "在哪儿办", "在哪办", "去哪里办", "去哪办", "在哪里", "在哪儿", "在哪", "哪里",
        "哪儿", "地点", "地址", "网上办", "网上", "线上", "在线", "能不能", "可不可以", "可以", "能", "条件",
        "资格", "需要", "要带", "带啥", "准备", "什么", "啥", "我想要", "我想", "我要", "想要", "想",
        "要", "办理", "申请", "申报", "一键", "办", "请问", "一下", "帮我", "给我", "我的",
        "我", "您", "你", "的", "了", "吗", "呢", "啊", "吧", "呀", "那", "还有", "还", "是", "一个",
        "去", "在", "给", "就", "也", "都", "这个", "那个", "不是", "办件", "进度", "查一下", "查询",
        "换成", "改成", "改", "换", "不对", "不要", "算了", "其实",
    },
    key=len,
    reverse=True,
)  # fmt: skip
# Words of two or more characters go wherever they are; single characters (个, 有, 不 are inside
# 个体工商户, 有限公司, 不动产) only at the ends of what is left.
# 办个 and 个 but not the 个 of 个体工商户; 不 and 有 are never stripped (不动产, 有限公司).
_WORDS = re.compile(
    "|".join([r"办一?个(?!体)", r"^个(?!体)", *(re.escape(w) for w in _QUESTION_WORDS if len(w) > 1)])
)
_EDGE_CHARS = "".join(w for w in _QUESTION_WORDS if len(w) == 1)
_NOT_WORD = re.compile(r"[^0-9A-Za-z\u3400-\u9fff]+")


def text_mentions(text: str) -> list[str]:
    """What is left of ``text`` once the phrasing is gone (the item named), then each of its pieces
    when punctuation or phrasing split it ("不对，是居住证"): the names to try, best first."""
    if not text or text.startswith("/"):
        # A button payload: its entities say it all.
        return []
    parts = [p.strip(_EDGE_CHARS) for p in _NOT_WORD.split(_WORDS.sub(" ", text))]
    parts = [p for p in parts if len(p) >= 2]  # one character ("证") is no item name
    whole = "".join(parts)
    return ([whole] if whole else []) + [p for p in parts if p != whole]


def text_mention(text: str) -> str | None:
    """The item ``text`` names, as far as the words go (None: it names none)."""
    found = text_mentions(text)
    return found[0] if found else None


@dataclass
class Mention:
    """An item named in the latest message: what the resident called it, and what it resolved to."""

    name: str
    resolution: Resolution


def entity_values(call: Call) -> list[str]:
    return [
        str(e.get("value"))
        for e in call.latest.get("entities") or ()
        if e.get("entity") == "item" and e.get("value")
    ]


# Intents whose text is read for an item name (the others name one only as an entity: "你今天心情
# 怎么样" names no item).
ITEM_INTENTS = {
    "inform",
    "start_application",
    "ask_materials",
    "ask_fee",
    "ask_time_limit",
    "ask_location",
    "ask_online",
    "ask_conditions",
}


async def mention_of(call: Call) -> Mention | None:
    """The item the latest message names (resolved, or not found), or None when it names none."""
    names = entity_values(call)
    if call.intent in ITEM_INTENTS:
        names += [n for n in text_mentions(call.text) if n not in names]
    first: Mention | None = None
    for name in names:
        res = await resolve(call, name)
        if res.item is not None:
            return Mention(name, res)
        if first is None or (res.candidates and not first.resolution.candidates):
            first = Mention(name, res)
    return first
