"""Fuzzy Chinese search over the item catalogue, in memory.

Residents type item names, everyday words (准生证, 房产证, 良民证), pinyin initials from a phone
keyboard ("lnz" for 老年证), full pinyin, homophone typos (老年正) and whole sentences
("我退休了想把公积金取出来"). The index covers all of these without a database:

* every item contributes *terms*: its name, synonyms and keywords, each with its pinyin syllables
  and initials (pypinyin, computed once per distinct term at build time);
* exact and substring matches are found by ``str.find`` over one joined string per form (C speed),
  so a query costs a few scans, not a Python loop over thousands of items;
* near misses are found through a syllable/character index (homophones share syllables) and scored
  with rapidfuzz.

The index is a plain object built from catalogue rows (mappings with ``code``, ``name``,
``department``, ``item_type``, ``synonyms``, ``keywords``), so the assistant can use it through the
``service_catalogue`` capability and the column can rebuild it when an administrator edits items.
"""

from __future__ import annotations

import heapq
import re
import unicodedata
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Field = Literal["name", "synonym", "keyword"]
FIELD_WEIGHT: dict[str, float] = {"name": 1.0, "synonym": 0.97, "keyword": 0.86}
MIN_SCORE = 60.0
MAX_FORMS = 120
MAX_KEYS = 8
SEP = "\x1f"

_CJK = re.compile(r"[\u3400-\u9fff]")
_RUNS = re.compile(r"[\u3400-\u9fff]+|[^\u3400-\u9fff]+")
_KEEP = re.compile(r"[^0-9a-z\u3400-\u9fff]")
# Words that carry no meaning for matching in a resident's sentence. Longest first.
_FILLERS = sorted(
    [
        "我想要", "我想", "我要", "想要", "想办", "怎么办理", "如何办理", "怎么办", "怎么", "如何", "在哪里",
        "在哪儿", "在哪", "哪里", "去哪", "需要什么", "要什么", "什么材料", "哪些材料", "多少钱", "多久",
        "请问", "一下", "帮我", "给我", "可以", "能不能", "办理", "申请", "办个", "办一个", "的", "了", "吗",
        "呢", "啊", "我",
    ],
    key=len,
    reverse=True,
)  # fmt: skip


def normalize(text: str) -> str:
    """NFKC (full-width to half-width), lower case, only letters, digits and CJK characters."""
    return _KEEP.sub("", unicodedata.normalize("NFKC", text).lower())


def strip_fillers(text: str) -> str:
    for word in _FILLERS:
        text = text.replace(word, "")
    return text


def _syllables(text: str) -> list[str]:
    """Pinyin syllables of the Chinese runs (phrase-aware, so 银行 is yin hang), other characters
    one by one: "80岁补贴" gives ["8", "0", "sui", "bu", "tie"]."""
    # pypinyin loads its phrase dictionary (about half a second) on import: here, when an index is
    # built, rather than in every process that imports the column.
    from pypinyin import lazy_pinyin

    out: list[str] = []
    for run in _RUNS.findall(text):
        if _CJK.match(run):
            out.extend(lazy_pinyin(run))
        else:
            out.extend(run)
    return out


def _initials(syllables: Sequence[str]) -> str:
    return "".join(s[0] for s in syllables if s)


@dataclass(frozen=True, slots=True)
class SearchHit:
    code: str
    name: str
    score: float
    matched: str
    field: Field


@dataclass(slots=True)
class _Term:
    item: int
    field: Field
    text: str
    pinyin: str
    initials: str
    syllables: tuple[str, ...]
    weight: float


class _Forms:
    """The distinct strings of one form (text, pinyin or initials) and the terms having each.

    A city catalogue repeats the same guide across units, so there are far fewer distinct forms
    than terms; scans and fuzzy matching run over the distinct ones.
    """

    def __init__(self, per_term: Sequence[str]) -> None:
        ids: dict[str, int] = {}
        self.forms: list[str] = []
        self.terms: list[list[int]] = []
        for term_i, form in enumerate(per_term):
            fid = ids.get(form)
            if fid is None:
                fid = ids[form] = len(self.forms)
                self.forms.append(form)
                self.terms.append([])
            self.terms[fid].append(term_i)
        self.starts: list[int] = []
        pos = 0
        for f in self.forms:
            self.starts.append(pos)
            pos += len(f) + 1
        self.blob = SEP.join(self.forms)

    def find_all(self, needle: str) -> list[int]:
        """Ids of the distinct forms containing ``needle``."""
        hits: list[int] = []
        if not needle:
            return hits
        start = self.blob.find(needle)
        while start != -1:
            fid = bisect_right(self.starts, start) - 1
            hits.append(fid)
            nxt = self.starts[fid + 1] if fid + 1 < len(self.starts) else len(self.blob)
            start = self.blob.find(needle, nxt)
        return hits

    def fuzzy(self, needle: str, cutoff: float, limit: int) -> list[tuple[int, float]]:
        # rapidfuzz (about 3 MB) loads with the first search, not in every api worker (issue 19).
        from rapidfuzz import fuzz, process

        return [
            (fid, score)
            for _, score, fid in process.extract(
                needle, self.forms, scorer=fuzz.ratio, score_cutoff=cutoff, limit=limit
            )
        ]


class CatalogueIndex:
    """An immutable search index over catalogue rows.

    A city catalogue implements the same guide in many units (a 70,000-item catalogue has a few
    hundred distinct guides), so items with the same terms form a *group* and the search scores
    groups: postings, distinct forms and fuzzy matching all run over groups, and only the groups
    that can reach the top are expanded into their items at the end (ties broken by name length,
    then code, exactly as if every item had been scored).
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.codes: list[str] = []
        self.names: list[str] = []
        self.departments: list[str] = []
        self.types: list[str] = []
        # Terms of each group's first item; ``_Term.item`` is the group id.
        self.terms: list[_Term] = []
        self._group_of: list[int] = []
        self._members: list[list[int]] = []
        groups: dict[tuple[tuple[str, str], ...], int] = {}
        pinyin_cache: dict[str, tuple[tuple[str, ...], str, str]] = {}
        for row in rows:
            idx = len(self.codes)
            self.codes.append(str(row["code"]))
            self.names.append(str(row["name"]))
            self.departments.append(str(row.get("department", "")))
            self.types.append(str(row.get("item_type", "")))
            seen: set[str] = set()
            fields: list[tuple[Field, str]] = [("name", row["name"])]
            fields += [("synonym", s) for s in row.get("synonyms", ())]
            fields += [("keyword", k) for k in row.get("keywords", ())]
            own: list[tuple[Field, str]] = []
            for field, raw in fields:
                text = normalize(str(raw))
                if text and text not in seen:
                    seen.add(text)
                    own.append((field, text))
            # The displayed name is part of the key: items whose names normalise alike but read
            # differently are ranked by their own names.
            key = (("", self.names[idx]), *own)
            group = groups.get(key)
            if group is None:
                group = groups[key] = len(self._members)
                self._members.append([])
                for field, text in own:
                    if text not in pinyin_cache:
                        syl = tuple(_syllables(text))
                        pinyin_cache[text] = (syl, "".join(syl), _initials(syl))
                    syl, pinyin, initials = pinyin_cache[text]
                    self.terms.append(_Term(group, field, text, pinyin, initials, syl, FIELD_WEIGHT[field]))
            self._members[group].append(idx)
            self._group_of.append(group)
        for members in self._members:
            members.sort(key=lambda i: self.codes[i])
        # Group-level posting lists: characters and pinyin syllables of all the group's terms.
        postings: dict[str, list[int]] = {}
        for term in self.terms:
            for k in set(term.text) | set(term.syllables):
                lst = postings.setdefault(k, [])
                if not lst or lst[-1] != term.item:
                    lst.append(term.item)
        self._postings = postings
        self._group_terms: list[list[int]] = [[] for _ in self._members]
        for i, term in enumerate(self.terms):
            self._group_terms[term.item].append(i)
        self._text = _Forms([t.text for t in self.terms])
        self._pinyin = _Forms([t.pinyin for t in self.terms])
        self._initials = _Forms([t.initials for t in self.terms])
        self._code_index = {c: i for i, c in enumerate(self.codes)}
        self._by_department: dict[str, set[int]] = {}
        self._by_type: dict[str, set[int]] = {}
        for i, (d, t) in enumerate(zip(self.departments, self.types, strict=True)):
            self._by_department.setdefault(d, set()).add(i)
            self._by_type.setdefault(t, set()).add(i)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def groups(self) -> int:
        """Distinct guides (items with the same terms count once)."""
        return len(self._members)

    def search(
        self,
        query: str,
        *,
        department: str | None = None,
        item_type: str | None = None,
        limit: int = 10,
    ) -> list[SearchHit]:
        """Best matches first; filters restrict to one department and/or one item type."""
        allowed = self._allowed(department, item_type)
        q = normalize(query)
        if not q:
            # No words: browse the filtered catalogue in its own order.
            picked = [i for i in range(len(self.codes)) if allowed is None or i in allowed][:limit]
            return [SearchHit(self.codes[i], self.names[i], 0.0, self.names[i], "name") for i in picked]
        core = strip_fillers(q) or q
        best: dict[int, tuple[float, int]] = {}
        if _CJK.search(core):
            self._score_chinese(core, best)
        else:
            self._score_letters(core, best)
        return self._rank(best, allowed, limit)

    def _rank(
        self, best: dict[int, tuple[float, int]], allowed: set[int] | None, limit: int
    ) -> list[SearchHit]:
        """The top ``limit`` items of the scored groups: by score, then name length, then code."""
        names, members = self.names, self._members
        order = sorted(
            (-round(score, 1), len(names[members[g][0]]), g)
            for g, (score, _) in best.items()
            if score >= MIN_SCORE
        )
        picked: list[tuple[float, int, str, int, int]] = []
        taken = 0
        last: tuple[float, int] | None = None
        for neg, length, g in order:
            # Past ``limit`` items, only groups tied with the last one taken can still place.
            if taken >= limit and (neg, length) != last:
                break
            own = 0
            for item in members[g]:  # sorted by code: past ``limit`` of them, none can place
                if allowed is None or item in allowed:
                    picked.append((neg, length, self.codes[item], item, best[g][1]))
                    taken += 1
                    own += 1
                    last = (neg, length)
                    if own >= limit:
                        break
        ranked = heapq.nsmallest(limit, picked)
        return [
            SearchHit(code, self.names[item], -neg, self.terms[ti].text, self.terms[ti].field)
            for neg, _, code, item, ti in ranked
        ]

    def _allowed(self, department: str | None, item_type: str | None) -> set[int] | None:
        if not department and not item_type:
            return None
        sets = []
        if department:
            sets.append(self._by_department.get(department, set()))
        if item_type:
            sets.append(self._by_type.get(item_type, set()))
        return set.intersection(*sets) if len(sets) > 1 else sets[0]

    def _offer(self, best: dict[int, tuple[float, int]], term_i: int, score: float) -> None:
        term = self.terms[term_i]
        score *= term.weight
        current = best.get(term.item)
        if current is None or score > current[0]:
            best[term.item] = (score, term_i)

    def _offer_ranked(
        self,
        best: dict[int, tuple[float, int]],
        forms: _Forms,
        scored: list[tuple[float, int]],
    ) -> None:
        """Offer the terms of the best-scored forms.

        A one-character query ("证") is inside most forms of a city catalogue, and offering every
        term behind them costs more than the rest of the search; only the best ``MAX_FORMS`` forms
        (the shortest, closest ones) can reach the top of the list anyway.
        """
        if len(scored) > MAX_FORMS:
            scored = heapq.nlargest(MAX_FORMS, scored)
        terms = self.terms
        for score, fid in scored:
            # Inlined _offer: this loop runs thousands of times for short queries.
            for ti in forms.terms[fid]:
                term = terms[ti]
                weighted = score * term.weight
                current = best.get(term.item)
                if current is None or weighted > current[0]:
                    best[term.item] = (weighted, ti)

    def _score_chinese(self, q: str, best: dict[int, tuple[float, int]]) -> None:
        # 1. The query inside a term (partial name) or equal to it.
        scored = [
            (100.0 if (t := self._text.forms[fid]) == q else 90.0 + 8.0 * len(q) / len(t), fid)
            for fid in self._text.find_all(q)
        ]
        self._offer_ranked(best, self._text, scored)
        # 2. Homophones: the query's pinyin inside a term's pinyin (老年正 -> 老年证).
        q_syl = _syllables(q)
        q_pinyin = "".join(q_syl)
        if len(q_syl) >= 2:
            for fid in self._pinyin.find_all(q_pinyin):
                py = self._pinyin.forms[fid]
                if py == q_pinyin:
                    score = 88.0
                elif len(q_syl) >= 3:
                    score = 80.0 + 8.0 * len(q_pinyin) / len(py)
                else:
                    continue
                for ti in self._pinyin.terms[fid]:
                    self._offer(best, ti, score)
        # 3. Candidates sharing characters or syllables, scored by rapidfuzz. This catches typos,
        #    swapped or missing characters, and terms contained in a longer sentence.
        # Rarest keys first: they discriminate, and the commonest ("证", "zheng") would cost the
        # most. Counter.update over a list counts in C.
        keys = [k for k in set(q) | set(q_syl) if not (k.isascii() and len(k) == 1 and not k.isdigit())]
        lists = sorted((self._postings[k] for k in keys if k in self._postings), key=len)[:MAX_KEYS]
        counts: Counter[int] = Counter()
        for lst in lists:
            counts.update(lst)
        if not counts:
            return
        need = max(1, min(2, len(q) // 2))
        extra: dict[int, int] = {}
        memo: dict[str, tuple[float, bool]] = {}
        terms = self.terms
        for group, n in counts.most_common(300):
            if n < need:
                break
            contained = 0
            top, top_ti = -1.0, -1
            for ti in self._group_terms[group]:
                term = terms[ti]
                cached = memo.get(term.text)
                if cached is None:
                    cached = memo[term.text] = _fuzzy_score(q, q_pinyin, term)
                contained += cached[1]
                weighted = cached[0] * term.weight
                if weighted > top:
                    top, top_ti = weighted, ti
            current = best.get(group)
            if current is None or top > current[0]:
                best[group] = (top, top_ti)
            if contained > 1:
                extra[group] = contained
        # A sentence naming several of an item's words ("退休" + "公积金") fits it better.
        for group, n in extra.items():
            score, ti = best[group]
            best[group] = (min(99.0, score + 4.0 * (n - 1)), ti)

    def _score_letters(self, q: str, best: dict[int, tuple[float, int]]) -> None:
        scored: list[tuple[float, int]] = []
        for fid in self._initials.find_all(q):
            ini = self._initials.forms[fid]
            if ini == q:
                score = 95.0
            elif ini.startswith(q):
                score = 86.0 + 8.0 * len(q) / len(ini)
            else:
                score = 76.0 + 8.0 * len(q) / len(ini)
            scored.append((score if len(q) >= 2 else score - 20.0, fid))
        self._offer_ranked(best, self._initials, scored)
        if len(q) >= 3:
            for fid in self._pinyin.find_all(q):
                py = self._pinyin.forms[fid]
                for ti in self._pinyin.terms[fid]:
                    self._offer(best, ti, 97.0 if py == q else 84.0 + 12.0 * len(q) / len(py))
            # Typos in initials or in pinyin.
            for forms, weight in ((self._initials, 0.85), (self._pinyin, 0.9)):
                for fid, score in forms.fuzzy(q, 72, 40):
                    for ti in forms.terms[fid]:
                        self._offer(best, ti, score * weight)

    def get(self, code: str) -> int | None:
        return self._code_index.get(code)


def _fuzzy_score(q: str, q_pinyin: str, term: _Term) -> tuple[float, bool]:
    """Score of one term against a Chinese query, and whether the term appears in the query."""
    from rapidfuzz import fuzz

    t = term.text
    if len(t) >= 2 and t in q:
        return 80.0 + 12.0 * len(t) / len(q), True
    score = max(
        fuzz.ratio(q, t),
        fuzz.ratio(q_pinyin, term.pinyin) * 0.95,
        fuzz.partial_ratio(q, t) * 0.85 if len(q) >= 3 and len(t) >= 3 else 0.0,
    )
    return min(score, 86.0), False


def build_index(rows: Iterable[Mapping[str, Any]]) -> CatalogueIndex:
    return CatalogueIndex(rows)
