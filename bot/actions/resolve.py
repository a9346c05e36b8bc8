"""Resolving what the resident called an item to one catalogue item (or a choice of a few)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.actions.call import Call, intent_payload

# Catalogue search scores (0-100): exact names and synonyms score 90-99, keywords 85-95,
# near misses 60-80. At SURE_SCORE a hit is the item the resident named; hits within AMBIGUOUS of
# each other are offered as a choice (公积金提取 → three kinds); from MAYBE_SCORE a hit is offered.
SURE_SCORE = 85.0
AMBIGUOUS = 6.0
MAYBE_SCORE = 80.0


@dataclass
class Resolution:
    """The item the resident named (its guide), or the search hits to offer as a choice."""

    item: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)


async def resolve(call: Call, name: str | None) -> Resolution:
    if not name:
        return Resolution()
    hits = await call.sources.search(str(name), limit=5)
    if not hits:
        return Resolution()
    top = hits[0]
    exact = [h for h in hits if h.get("name") == name]
    if exact:
        top = exact[0]
    else:
        best = float(top.get("score", 0))
        close = [h for h in hits if float(h.get("score", 0)) >= max(SURE_SCORE, best - AMBIGUOUS)]
        if len(close) > 1:
            return Resolution(candidates=close)
        if best < MAYBE_SCORE:
            return Resolution()
        if best < SURE_SCORE:
            return Resolution(candidates=[top])
    item = await call.sources.item(str(top.get("code")))
    return Resolution(item=item) if item is not None else Resolution()


def _which_buttons(candidates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(c.get("name")), intent_payload("inform", item=str(c.get("name")))) for c in candidates]


def not_found(call: Call, name: str | None, res: Resolution) -> None:
    """Say why no item answers ``name``: the catalogue is down, a choice of near hits, or none."""
    if not call.sources.catalogue_available:
        call.say(f"事项目录暂时无法查询，请稍后再试，或拨打 {call.settings.hotline} 热线咨询。")
    elif res.candidates:
        call.say(f"您说的“{name}”可能是下面几个事项，请选一个：", _which_buttons(res.candidates))
    else:
        call.say(f"抱歉，事项目录里没有找到“{name}”。可以换个说法，比如“老年证”“居住证”“营业执照”。")
