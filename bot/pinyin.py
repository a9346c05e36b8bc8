"""Pinyin and mixed input turned into the Chinese the NLU model was trained on, before it sees it.

Residents type "shebao ka zen me ban", "lao nian zheng yao dai shen me cai liao", "shè bǎo kǎ",
"she4bao3ka3", "社保卡zenme ban" or "老年证 fee". The NLU model knows Chinese only, so a message
with Latin letters is rewritten here:

1. tone marks and tone numbers are dropped (ü → v);
2. every word of letters is split into pinyin syllables (the syllables pypinyin knows); a word that
   is not pinyin is looked up among a few English words and otherwise kept as it is ("app", "hi");
3. within a run of syllables, the question words of the assistant's domain (怎么办, 什么材料,
   多少钱, 在哪里, ...) are recognised, longest first;
4. what is left between them is looked up in the live catalogue's pinyin search (the same search
   the app uses), and replaced by the item's name when the hit is clear; single-syllable words
   (要, 带, 办, ...) are trimmed off the ends of a stretch that does not match as a whole;
5. pinyin initials typed alone ("lnz") are looked up in the catalogue the same way.

Anything that cannot be turned into Chinese stays as typed. Catalogue names come from the catalogue
at the time of the message, so an item imported a minute ago is recognised in pinyin too.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any

Search = Callable[[str], Awaitable[list[dict[str, Any]]]]

# A hit replaces a pinyin stretch from this score, when no other hit is within CLEAR_MARGIN of it.
ITEM_SCORE = 85.0
CLEAR_MARGIN = 2.0
# Stretches longer than this many syllables are not searched as one item name.
MAX_ITEM_SYLLABLES = 10

# Question words and everyday words of the domain: pinyin (syllables without tones) → Chinese.
_WORDS: dict[str, str] = {
    # how / what / where / when / how much
    "zenme": "怎么",
    "zenmeban": "怎么办",
    "zenmebanli": "怎么办理",
    "zenmeshenqing": "怎么申请",
    "ruhe": "如何",
    "ruhebanli": "如何办理",
    "shenme": "什么",
    "sha": "啥",
    "naxie": "哪些",
    "nali": "哪里",
    "naer": "哪儿",
    "zaina": "在哪",
    "zainali": "在哪里",
    "duoshao": "多少",
    "duoshaoqian": "多少钱",
    "duojiu": "多久",
    "duochang": "多长",
    "shijian": "时间",
    "jitian": "几天",
    "shenmeshihou": "什么时候",
    # materials, fee, time, place, online, conditions
    "cailiao": "材料",
    "shenmecailiao": "什么材料",
    "zhengjian": "证件",
    "shouxu": "手续",
    "feiyong": "费用",
    "shoufei": "收费",
    "qian": "钱",
    "mianfei": "免费",
    "banli": "办理",
    "shenqing": "申请",
    "shenbao": "申报",
    "bangong": "办公",
    "didian": "地点",
    "difang": "地方",
    "wangshang": "网上",
    "xianshang": "线上",
    "zaixian": "在线",
    "tiaojian": "条件",
    "zige": "资格",
    "jindu": "进度",
    "banjian": "办件",
    "zhangdan": "账单",
    "jiaofei": "缴费",
    "daibandian": "代办点",
    "fujin": "附近",
    "rengong": "人工",
    "zhuanrengong": "转人工",
    "kefu": "客服",
    # verbs and particles
    "xuyao": "需要",
    "yao": "要",
    "dai": "带",
    "zhunbei": "准备",
    "ban": "办",
    "qu": "去",
    "zai": "在",
    "neng": "能",
    "keyi": "可以",
    "nengbuneng": "能不能",
    "keyibukeyi": "可不可以",
    "xiang": "想",
    "wo": "我",
    "wode": "我的",
    "de": "的",
    "le": "了",
    "ma": "吗",
    "ne": "呢",
    "a": "啊",
    "ba": "吧",
    "qingwen": "请问",
    "yixia": "一下",
    "bang": "帮",
    "gei": "给",
    "cha": "查",
    "chaxun": "查询",
    "ge": "个",
    "yige": "一个",
    "hao": "好",
    "haole": "好了",
    "shi": "是",
    "bu": "不",
    "buyong": "不用",
    "buyongle": "不用了",
    "queren": "确认",
    "quxiao": "取消",
    "suanle": "算了",
    # greetings
    "nihao": "你好",
    "ninhao": "您好",
    "xiexie": "谢谢",
    "zaijian": "再见",
    "baibai": "拜拜",
}
# English words residents mix in → Chinese.
_ENGLISH: dict[str, str] = {
    "how": "怎么",
    "what": "什么",
    "where": "在哪里",
    "fee": "费用",
    "fees": "费用",
    "cost": "费用",
    "price": "多少钱",
    "material": "材料",
    "materials": "材料",
    "documents": "材料",
    "online": "网上",
    "apply": "申请",
    "status": "进度",
    "human": "人工",
    "agent": "人工",
    "help": "帮助",
    "thanks": "谢谢",
    "thank": "谢谢",
    "bye": "再见",
    "hello": "你好",
}

_LATIN_RUN = re.compile(r"[A-Za-z\u00c0-\u024f][A-Za-z0-9\u00c0-\u024f'’ ]*")
_TONE_DIGIT = re.compile(r"(?<=[a-z])[1-5]")
_INITIALS = re.compile(r"^[bcdfghjklmnpqrstwxyz]{2,6}$")


@lru_cache(maxsize=1)
def _syllable_set() -> frozenset[str]:
    from pypinyin.contrib.tone_convert import to_normal
    from pypinyin.pinyin_dict import pinyin_dict

    out: set[str] = set()
    for readings in pinyin_dict.values():
        for r in readings.split(","):
            s = to_normal(r).replace("ü", "v")
            # Interjections without a vowel (m, n, ng, hm) would split ordinary English words.
            if s.isascii() and s.isalpha() and re.search("[aeiouv]", s):
                out.add(s)
    return frozenset(out)


def _plain(text: str) -> str:
    """Lower case, tone marks and tone digits dropped, ü as v."""
    text = text.lower().replace("ü", "v").replace("u:", "v")
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _TONE_DIGIT.sub("", text)


def syllables(word: str) -> list[str] | None:
    """``word`` split into pinyin syllables (fewest syllables), or None when it is not pinyin."""
    known = _syllable_set()
    n = len(word)
    best: list[list[str] | None] = [None] * (n + 1)
    best[0] = []
    for i in range(n):
        head = best[i]
        if head is None:
            continue
        for j in range(min(n, i + 6), i, -1):
            piece = word[i:j]
            if piece in known:
                cand = [*head, piece]
                current = best[j]
                if current is None or len(cand) < len(current):
                    best[j] = cand
    return best[n]


async def _item_name(query: str, search: Search) -> tuple[str, float] | None:
    """The catalogue item ``query`` (pinyin or initials) clearly names, with its score, if one does."""
    hits = await search(query)
    if not hits:
        return None
    top = float(hits[0].get("score", 0))
    second = float(hits[1].get("score", 0)) if len(hits) > 1 else 0.0
    if top >= ITEM_SCORE and top - second >= CLEAR_MARGIN:
        return str(hits[0].get("name")), top
    return None


async def _stretch(syl: list[str], search: Search) -> str:
    """Chinese for syllables that are not question words: an item name, or word by word.

    The item is looked for in the whole stretch and in the stretch with single-syllable words
    trimmed off its ends ("laonianzheng yao dai"); the best-scoring span wins (the longer on a tie).
    """
    best: tuple[float, int, int, int, str] | None = None
    for i in range(len(syl)):
        if not all(s in _WORDS for s in syl[:i]):
            break
        for j in range(len(syl), i + 1, -1):
            if j - i > MAX_ITEM_SYLLABLES or not all(s in _WORDS for s in syl[j:]):
                continue
            found = await _item_name("".join(syl[i:j]), search)
            if found is not None and (best is None or (found[1], j - i) > (best[0], best[1])):
                best = (found[1], j - i, i, j, found[0])
    if best is not None:
        _, _, i, j, name = best
        return "".join(_WORDS[s] for s in syl[:i]) + name + "".join(_WORDS[s] for s in syl[j:])
    if all(s in _WORDS for s in syl):
        return "".join(_WORDS[s] for s in syl)
    return " ".join(syl)


def _longest_word(syl: list[str], i: int) -> int:
    """How many syllables from ``i`` make the longest multi-syllable question word (0: none)."""
    for j in range(min(len(syl), i + 6), i + 1, -1):
        if "".join(syl[i:j]) in _WORDS:
            return j - i
    return 0


async def _run(run: str, search: Search) -> str:
    """One run of Latin letters (words separated by spaces) in Chinese, as far as it goes."""
    pieces: list[str] = []
    syl: list[str] = []

    async def flush() -> None:
        if not syl:
            return
        out: list[str] = []
        rest: list[str] = []
        i = 0
        while i < len(syl):
            n = _longest_word(syl, i)
            if n:
                if rest:
                    out.append(await _stretch(rest, search))
                    rest = []
                out.append(_WORDS["".join(syl[i : i + n])])
                i += n
            else:
                rest.append(syl[i])
                i += 1
        if rest:
            out.append(await _stretch(rest, search))
        pieces.append("".join(out))
        syl.clear()

    for typed in run.replace("’", "'").split():
        word = _plain(typed)
        parts = [p for p in word.split("'") if p]
        split = [syllables(p) for p in parts]
        if parts and all(s is not None for s in split) and word not in _ENGLISH:
            for s in split:
                syl.extend(s or [])
            continue
        await flush()
        if word in _ENGLISH:
            pieces.append(_ENGLISH[word])
        elif _INITIALS.match(word) and (found := await _item_name(word, search)) is not None:
            pieces.append(found[0])
        else:
            pieces.append(" " + typed + " ")
    await flush()
    return "".join(pieces).strip()


def has_latin(text: str) -> bool:
    return _LATIN_RUN.search(text) is not None


async def to_chinese(text: str, search: Search) -> str:
    """``text`` with its pinyin and English words turned into Chinese where they can be."""
    if not has_latin(text):
        return text
    out: list[str] = []
    pos = 0
    for m in _LATIN_RUN.finditer(text):
        out.append(text[pos : m.start()])
        out.append(await _run(m.group(0), search))
        pos = m.end()
    out.append(text[pos:])
    return re.sub(r"\s+", " ", "".join(out)).strip()
