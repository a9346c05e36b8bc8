"""Measure the pinyin step and the rescue of converted messages against a trained model.

For each typed question (the pinyin, tone, initials and mixed forms of ``tests/bot/test_bot_pinyin.py``
and the issue's examples): the Chinese ``bot/pinyin.py`` makes of it with the seed catalogue (and
how long that takes in process, median of 20), what the model reads it as (``/model/parse`` of a
running Rasa server), and what the chat endpoint sends to Rasa after the rescue (``router._rescue``:
an intent payload when the model reads a converted message as out of scope, a greeting... and it
names an item clearly). The figures are in bot/EVALUATION.md.

Usage (a Rasa server with the model, ``--enable-api``)::

    venv=$(scripts/rasa-env.sh); model=$(scripts/rasa-train.sh)
    (cd bot/rasa && $venv/bin/rasa run --enable-api --port 5105 -m $model) &
    .venv/bin/python bot/tools/pinyin_rescue.py --rasa-url http://127.0.0.1:5105

A throw-away SQLite database (the migrations, then the seed catalogue) is made for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TYPED = [
    "shebao ka zen me ban",
    "shebaokazenmeban",
    "shè bǎo kǎ duō shǎo qián",
    "she4bao3ka3 duo1shao3qian2",
    "lao nian zheng yao dai shen me cai liao",
    "社保卡zenme ban",
    "老年证 fee",
    "lnz",
    "zhuan rengong",
    "juzhuzheng zai nali ban",
    "lao nian zheng xu yao shen me tiao jian",
    "shebao ka duo jiu neng na dao",
]


async def main(rasa_url: str) -> None:
    import httpx

    from app_api.core.db import session_scope
    from bot.config import BotSettings
    from bot.pinyin import to_chinese
    from bot.router import _rescue
    from bot.sources import Sources
    from columns.gov_services import catalogue_store

    async with session_scope() as s:
        await catalogue_store.seed(s)
    settings = BotSettings(rasa_url=rasa_url, state_file="")
    print("| typed | converted (ms, median of 20) | model reads | sent to Rasa after the rescue |")
    print("|---|---|---|---|")
    async with httpx.AsyncClient(timeout=30) as http:
        for typed in TYPED:
            async with session_scope() as s:
                sources = Sources(s)

                def search(q: str, sources: Sources = sources) -> object:
                    return sources.search(q, limit=3)

                times = []
                converted = typed
                for _ in range(20):
                    t0 = time.perf_counter()
                    converted = await to_chinese(typed, search)  # type: ignore[arg-type]
                    times.append((time.perf_counter() - t0) * 1000)
                parsed = (await http.post(f"{rasa_url}/model/parse", json={"text": converted})).json()
                intent = parsed.get("intent") or {}
                entities = ",".join(dict.fromkeys(e.get("value", "") for e in parsed.get("entities") or []))
                sent = await _rescue(converted, sources, settings) if converted != typed else converted
            read = f"{intent.get('name')} ({intent.get('confidence', 0):.2f})" + (
                f" [{entities}]" if entities else ""
            )
            ms = statistics.median(times)
            print(f"| {typed} | {converted} ({ms:.2f}) | {read} | {sent if sent != converted else '='} |")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rasa-url", default="http://127.0.0.1:5105")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="wojia-pinyin-"))
    os.environ["WOJIA_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'eval.db'}"
    os.environ.setdefault("WOJIA_VAR_DIR", str(tmp))
    os.environ.setdefault("WOJIA_ENVIRONMENT", "test")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from app_api.wiring.migrate import upgrade

    upgrade()  # runs its own event loop
    asyncio.run(main(args.rasa_url))
