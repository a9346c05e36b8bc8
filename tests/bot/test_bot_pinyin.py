"""Pinyin and mixed input turned into Chinese before the NLU, with the live catalogue (no Rasa)."""

from __future__ import annotations

import pytest

from app_api.core.db import session_scope
from bot.pinyin import syllables, to_chinese
from bot.sources import Sources


async def convert(text: str) -> str:
    async with session_scope() as s:
        sources = Sources(s)
        return await to_chinese(text, lambda q: sources.search(q, limit=3))


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("shebao ka zen me ban", "社会保障卡申领怎么办"),
        ("shebaokazenmeban", "社会保障卡申领怎么办"),  # no spaces
        ("shè bǎo kǎ duō shǎo qián", "社会保障卡申领多少钱"),  # tone marks
        ("she4bao3ka3 duo1shao3qian2", "社会保障卡申领多少钱"),  # tone numbers
        ("lao nian zheng yao dai shen me cai liao", "老年人优待证办理要带什么材料"),
        ("社保卡zenme ban", "社保卡怎么办"),  # mixed Chinese and pinyin
        ("老年证 fee", "老年证 费用"),  # mixed Chinese and English (the chat drops the space)
        ("lnz", "老年人优待证办理"),  # initials
        ("zhuan rengong", "转人工"),
    ],
)
async def test_pinyin_becomes_chinese(typed: str, expected: str) -> None:
    assert await convert(typed) == expected


@pytest.mark.parametrize("typed", ["hi", "iPhone15 app", "老年证要带什么材料", "12345", "OK"])
async def test_what_is_not_pinyin_stays_as_typed(typed: str) -> None:
    assert await convert(typed) == typed


def test_syllables() -> None:
    assert syllables("zenmeban") == ["zen", "me", "ban"]
    assert syllables("xian") == ["xian"]  # fewest syllables
    assert syllables("hello") is None and syllables("app") is None
