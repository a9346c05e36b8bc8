"""Which items fit a need told in a sentence (我要开个小吃店 → 个体工商户设立登记, 食品经营许可)."""

from __future__ import annotations

import re
from typing import Any

from bot.actions.call import Call, intent_payload
from bot.actions.resolve import Resolution, not_found
from bot.sources import Sources

# A resident's sentence describing a need: the whole sentence matches from SENTENCE_SCORE, a phrase
# inside it (小吃, 开…店) only as an exact keyword, from PHRASE_SCORE.
SENTENCE_SCORE = 70.0
PHRASE_SCORE = 85.0
# Characters of phrasing, not of needs: a phrase with any of them in it is not searched.
_FILLER_CHARS = set("我你他俺要想办什么哪些的了吗呢啊吧个一家请问需可以能怎么去在有是这那给帮做该些啥")
_FILLER_CHARS |= set("准备打算刚手续事情")


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


async def match_need(sources: Sources, text: str, limit: int = 5) -> list[dict[str, Any]]:
    """Items that fit a need told in a sentence, best first: the search hits of the sentence and of
    the phrases in it."""
    best: dict[str, tuple[float, dict[str, Any]]] = {}

    def offer(hit: dict[str, Any], floor: float) -> None:
        score = float(hit.get("score", 0))
        code = str(hit.get("code"))
        if score >= floor and (code not in best or best[code][0] < score):
            best[code] = (score, hit)

    for hit in await sources.search(text, limit=limit):
        offer(hit, SENTENCE_SCORE)
    for phrase in _phrases(text):
        for hit in await sources.search(phrase, limit=3):
            offer(hit, PHRASE_SCORE)
    ranked = sorted(best.values(), key=lambda sh: -sh[0])
    return [hit for _, hit in ranked[:limit]]


async def action_find_item(call: Call) -> None:
    if not call.sources.catalogue_available:
        not_found(call, call.text, Resolution())
        return
    hits = await match_need(call.sources, call.text)
    if not hits:
        call.say("抱歉，我没找到和您说的情况对应的事项。能说得具体一点吗？比如“我要开个小吃店”“孩子刚出生”。")
        return
    names = [str(h.get("name")) for h in hits]
    shown, _ = call.short(names)
    body = "\n".join(f"{i}. {n}" for i, n in enumerate(shown, 1))
    call.say(
        f"根据您说的情况，可能需要办理：\n{body}\n点一个看办事指南。",
        [(n, intent_payload("inform", item=n)) for n in shown],
    )
