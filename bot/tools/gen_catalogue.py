"""Generate the assistant's catalogue-dependent training inputs.

Run by scripts/rasa-train.sh before training (any Python 3 with PyYAML: the Rasa venv has it).
Reads the service catalogue's seed file (columns/gov_services/data/, JSON, YAML or CSV), or
bot/rasa/catalogue_fallback.yml while that file does not exist, and writes:

- bot/rasa/data/generated/items.yml: the `item` lookup table (names and synonyms, longest first so the
  regex prefers 个体工商户营业执照 over 营业执照), entity synonyms mapping each alias to the item's
  name, and bare-name `inform` examples (what a resident types when the assistant asks "which item?");
- bot/rasa/dictionary/items.txt: a jieba user dictionary, so every name is one token.

Prints the source used and the item count. Exits non-zero when no catalogue has at least one item.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import re
import sys
from pathlib import Path
from typing import Any

import yaml

BOT = Path(__file__).resolve().parents[1]
ROOT = BOT.parent
RASA = BOT / "rasa"
SEED_DIR = ROOT / "columns" / "gov_services" / "data"
FALLBACK = RASA / "catalogue_fallback.yml"

NAME_KEYS = ("name", "item_name", "title", "名称", "事项名称")
ALIAS_KEYS = ("synonyms", "aliases", "alias", "short_names", "别名", "同义词")
SEED_HINTS = ("item", "catalog", "seed", "事项")

# Names shorter than this are too ambiguous to be one token or an entity on their own.
MIN_LEN = 2
MAX_INFORM_EXAMPLES = 90


def _clean(name: Any) -> str:
    return re.sub(r"\s+", "", str(name or "")).strip()


def _split_aliases(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p for p in re.split(r"[,，;；、|/\n]+", value) if p.strip()]
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out.extend(_split_aliases(v))
        return out
    return []


def _records(data: Any) -> list[dict[str, Any]]:
    """Find the list of item records in a parsed seed file of unknown exact shape."""
    if isinstance(data, list):
        return [r for r in data if isinstance(r, dict)]
    if isinstance(data, dict):
        for key in ("items", "catalogue", "catalog", "data", "records"):
            if isinstance(data.get(key), list):
                return _records(data[key])
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) == 1:
            return _records(lists[0])
    return []


def _load(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".json":
        return _records(json.loads(text))
    if path.suffix in (".yml", ".yaml"):
        return _records(yaml.safe_load(text))
    if path.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    return []


def _items_from(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    items: dict[str, list[str]] = {}
    for rec in records:
        name = next((_clean(rec[k]) for k in NAME_KEYS if rec.get(k)), "")
        if len(name) < MIN_LEN:
            continue
        aliases: list[str] = []
        for k in ALIAS_KEYS:
            aliases.extend(_clean(a) for a in _split_aliases(rec.get(k)))
        items.setdefault(name, [])
        for a in aliases:
            if len(a) >= MIN_LEN and a != name and a not in items[name]:
                items[name].append(a)
    return items


def find_seed() -> Path | None:
    override = os.environ.get("WOJIA_BOT_CATALOGUE")
    if override:
        return Path(override)
    if not SEED_DIR.is_dir():
        return None
    candidates = sorted(
        p
        for p in SEED_DIR.iterdir()
        if p.suffix in (".json", ".yml", ".yaml", ".csv") and any(h in p.name.lower() for h in SEED_HINTS)
    )
    for p in candidates:
        try:
            if _items_from(_load(p)):
                return p
        except (ValueError, yaml.YAMLError, csv.Error, UnicodeDecodeError):
            continue
    return None


def _merge_extra_aliases(items: dict[str, list[str]], extra: dict[str, list[str]]) -> None:
    """Add the everyday names from catalogue_fallback.yml to the catalogue item they denote.

    A fallback entry denotes a catalogue item when one of its names is one of the item's names, or
    else when its name is contained in exactly one item's name (居住证 in 居住证办理).
    """
    for fname, faliases in extra.items():
        fnames = {fname, *faliases}
        target = next((n for n, al in items.items() if fnames & {n, *al}), None)
        if target is None:
            containing = [n for n in items if fname in n]
            target = containing[0] if len(containing) == 1 else None
        if target is None:
            continue
        for a in sorted(fnames):
            if a != target and a not in items[target]:
                items[target].append(a)


def _with_short_names(items: dict[str, list[str]]) -> dict[str, list[str]]:
    """Names like 户口迁移（投靠亲属） also go by the part before the parenthesis."""
    for name, aliases in items.items():
        short = re.split(r"[（(]", name)[0]
        if len(short) >= MIN_LEN and short != name and short not in aliases:
            aliases.append(short)
    return items


def load_catalogue() -> tuple[str, dict[str, list[str]]]:
    fallback = _items_from(yaml.safe_load(FALLBACK.read_text(encoding="utf-8"))["items"])
    seed = find_seed()
    if seed is not None:
        items = _items_from(_load(seed))
        if items:
            _merge_extra_aliases(items, fallback)
            shown = seed.relative_to(ROOT) if seed.is_relative_to(ROOT) else seed
            return str(shown), _with_short_names(items)
    return str(FALLBACK.relative_to(ROOT)), _with_short_names(fallback)


def _unambiguous(items: dict[str, list[str]]) -> dict[str, list[str]]:
    """An alias claimed by two items (or equal to another item's name) maps to neither.

    It stays in the lookup table, so it is still recognised as an item; the action webhook then
    resolves it against the live catalogue and asks which one is meant.
    """
    owners: dict[str, set[str]] = {}
    for name, aliases in items.items():
        for a in aliases:
            owners.setdefault(a, set()).add(name)
    return {
        name: [a for a in aliases if len(owners[a]) == 1 and a not in items]
        for name, aliases in items.items()
    }


def _tokenisable(word: str) -> bool:
    # jieba splits text at characters outside this class, so such a word can never be one token.
    return re.fullmatch(r"[\u4E00-\u9FD5a-zA-Z0-9+#&._%-]+", word) is not None


_VERB_PREFIXES = ("申请", "申领", "补办", "办理", "办", "开", "领", "交", "请")
_VERB_SUFFIXES = ("申请", "申领", "补办", "办理")


def _core(word: str) -> str:
    """The noun part of an everyday name: 办居住证 -> 居住证, 社保卡补办 -> 社保卡."""
    for p in _VERB_PREFIXES:
        if word.startswith(p) and len(word) - len(p) >= 2:
            word = word[len(p) :]
            break
    for s in _VERB_SUFFIXES:
        if word.endswith(s) and len(word) - len(s) >= 2:
            word = word[: -len(s)]
            break
    return word


def render(items: dict[str, list[str]]) -> tuple[str, str]:
    words = sorted({w for n, al in items.items() for w in (n, *al)}, key=lambda w: (-len(w), w))
    synonyms = _unambiguous(items)

    lines = ['version: "3.1"', "# Generated by bot/tools/gen_catalogue.py; do not edit.", "nlu:"]
    lines += ["- lookup: item", "  examples: |"]
    lines += [f"    - {w}" for w in words]
    for name in sorted(synonyms):
        if synonyms[name]:
            lines += [f"- synonym: {name}", "  examples: |"]
            lines += [f"    - {a}" for a in synonyms[name]]
    # Bare names as answers to "which item?": a deterministic sample keeps the intent balanced.
    rng = random.Random(8)
    bare = sorted(items)
    rng.shuffle(bare)
    bare = bare[:MAX_INFORM_EXAMPLES]
    lines += ["- intent: inform", "  examples: |"]
    for name in sorted(bare):
        candidates = [w for w in (name, *synonyms[name]) if _tokenisable(w)] or [name]
        lines.append(f"    - [{rng.choice(candidates)}](item)")
    nlu = "\n".join(lines) + "\n"

    # jieba user dictionary: "word freq tag"; a high frequency makes the name win over splits.
    # Verbs are cut off first, so 能办居住证吗 tokenises as 能/办/居住证/吗, not 能/办居住证/吗.
    dict_words = sorted({_core(w) for w in words if _tokenisable(w)}, key=lambda w: (-len(w), w))
    jieba = "".join(f"{w} {3000 + 100 * len(w)} nz\n" for w in dict_words)
    return nlu, jieba


def main() -> int:
    source, items = load_catalogue()
    if not items:
        print("gen_catalogue: no items found", file=sys.stderr)
        return 1
    nlu, jieba = render(items)
    (RASA / "data" / "generated").mkdir(parents=True, exist_ok=True)
    (RASA / "dictionary").mkdir(parents=True, exist_ok=True)
    (RASA / "data" / "generated" / "items.yml").write_text(nlu, encoding="utf-8")
    (RASA / "dictionary" / "items.txt").write_text(jieba, encoding="utf-8")
    print(f"gen_catalogue: {len(items)} items from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
