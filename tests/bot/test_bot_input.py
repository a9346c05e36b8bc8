"""Bad input to the chat API: a polite Chinese answer or a clear 4xx, never a 5xx; a sender flooding
messages is rate-limited per account and per client address. No trained model needed: everything here
is answered before Rasa is asked (Rasa is pointed at a port where nothing listens, so a message that
did reach it would get 503)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app_api.core.redis import get_redis
from bot.config import BotSettings, get_bot_settings
from bot.router import NO_WORDS_REPLY, normalize_message

URL = "/api/v1/bot/messages"


def nowhere() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def forget_counts() -> None:
    """Drop the chat's rate-limit windows (other tests from the same test client share the address)."""
    r = await get_redis()
    async for key in r.scan_iter(match="bot:rate:*"):
        await r.delete(key)


@pytest.fixture
def settings(app: Any) -> Iterator[BotSettings]:
    s = BotSettings(rasa_url=nowhere(), state_file="")
    app.dependency_overrides[get_bot_settings] = lambda: s
    yield s
    app.dependency_overrides.pop(get_bot_settings, None)


@pytest.fixture
async def fresh_counts() -> AsyncIterator[None]:
    """No counts yet, and the minute's window not about to close (a flood counted across two windows
    would never reach the limit)."""
    import asyncio
    import time

    if time.time() % 60 > 50:
        await asyncio.sleep(60 - time.time() % 60 + 0.1)
    await forget_counts()
    yield
    await forget_counts()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("", 422),
        ("   \n\t ", 422),
        ("办" * 5000, 422),
        ("老年证\x00要带什么", 422),
        ("\x07\x1b[31m", 422),
    ],
)
async def test_refused_with_a_clear_4xx(
    client: httpx.AsyncClient, settings: BotSettings, fresh_counts: None, message: str, code: int
) -> None:
    r = await client.post(URL, json={"message": message})
    assert r.status_code == code, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any("\u4e00" <= ch <= "\u9fff" for ch in r.json()["title"])


@pytest.mark.parametrize(
    "message", ["😀😀👍", "🙏", "<script></script>", "<b><i></i></b>", "\u200b\u200b", "。。。！？"]
)
async def test_no_words_get_a_polite_answer_without_the_model(
    client: httpx.AsyncClient, settings: BotSettings, fresh_counts: None, message: str
) -> None:
    r = await client.post(URL, json={"message": message})
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [{"text": NO_WORDS_REPLY}]
    assert r.json()["conversation_id"]


def test_markup_is_dropped_before_the_model_sees_it() -> None:
    assert normalize_message("<script>alert(1)</script>老年证 要带什么") == "alert(1) 老年证要带什么"
    assert normalize_message("老\u200b年证") == "老年证"


async def test_a_flood_from_one_account_is_limited(
    client: httpx.AsyncClient, settings: BotSettings, fresh_counts: None, login: Any
) -> None:
    settings.messages_per_account_per_minute = 3
    headers, other = await login(), await login()
    for _ in range(3):
        assert (await client.post(URL, json={"message": "😀"}, headers=headers)).status_code == 200
    r = await client.post(URL, json={"message": "😀"}, headers=headers)
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "bot.rate_limited" and 1 <= int(r.headers["retry-after"]) <= 60
    # Another account from the same address is not held back.
    assert (await client.post(URL, json={"message": "😀"}, headers=other)).status_code == 200


async def test_a_flood_from_one_address_is_limited(
    client: httpx.AsyncClient, settings: BotSettings, fresh_counts: None
) -> None:
    settings.messages_per_ip_per_minute = 5
    # New conversation ids do not get round it: the address is counted.
    for _ in range(5):
        assert (await client.post(URL, json={"message": "👍"})).status_code == 200
    r = await client.post(URL, json={"message": "👍"})
    assert r.status_code == 429 and r.json()["code"] == "bot.rate_limited"
