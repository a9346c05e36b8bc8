"""Helpers shared by the assistant's tests."""

from __future__ import annotations

from typing import Any

import httpx

from bot.config import get_bot_settings


async def catalogue_item(name: str) -> dict[str, Any]:
    """The catalogue's guide for what a resident calls ``name`` (through the same capability)."""
    from app_api.platform.capabilities import ServiceCatalogue, lookup

    cat = lookup(ServiceCatalogue)
    assert cat is not None, "the government services column offers no ServiceCatalogue"
    hit = (await cat.search(name, limit=1))[0]
    item = await cat.item(hit["code"])
    assert item is not None
    return item


ACTIONS_URL = "/api/v1/bot/actions"


def auth() -> dict[str, str]:
    return {"Authorization": "Bearer " + get_bot_settings().action_token.get_secret_value()}


def user(text: str, intent: str, metadata: dict[str, Any] | None = None, **entities: str) -> dict[str, Any]:
    return {
        "event": "user",
        "text": text,
        "parse_data": {
            "intent": {"name": intent, "confidence": 0.99},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
            "text": text,
        },
        "metadata": metadata or {},
    }


def body(
    action: str,
    events: list[dict[str, Any]],
    slots: dict[str, Any] | None = None,
    sender: str = "anonymous-test",
    active_loop: str | None = None,
) -> dict[str, Any]:
    last = next(e for e in reversed(events) if e["event"] == "user")
    return {
        "next_action": action,
        "sender_id": sender,
        "tracker": {
            "sender_id": sender,
            "slots": {"elderly": False, **(slots or {})},
            "latest_message": {**last["parse_data"], "text": last["text"]},
            "events": events,
            "active_loop": {"name": active_loop} if active_loop else {},
            "latest_action_name": "action_listen",
        },
        "domain": {},
        "version": "3.6.21",
    }


def texts(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return "\n".join(m.get("text", "") for m in r.json()["responses"])
