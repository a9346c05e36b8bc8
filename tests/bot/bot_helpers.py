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


# An item no model was trained on: imported into the catalogue by the tests (catalogue import API).
NEW_ITEM_CODE = "BZ-BOT-901"
NEW_ITEM_NAME = "蜂农转场证明"
NEW_ITEM_MATERIAL = "蜂群检疫合格证明"
CATALOGUE_API = "/api/v1/columns/gov_services/admin/catalogue"


async def import_new_item(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Import 蜂农转场证明 (a copy of an existing row with its own code, name, words and materials)
    through the administrators' catalogue import, as a CSV sheet."""
    import csv
    import io

    r = await client.get(f"{CATALOGUE_API}/export", params={"format": "csv"}, headers=admin)
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    header = rows[0]
    col = header.index
    row = next(list(x) for x in rows[1:] if x[col("事项编码")] == "BZ-MZ-001")
    row[col("事项编码")] = NEW_ITEM_CODE
    row[col("事项名称")] = NEW_ITEM_NAME
    row[col("同义词")] = "蜂农转场"
    row[col("关键词")] = "养蜂转场"
    row[col("申请材料")] = (
        f"{NEW_ITEM_MATERIAL} | 必要 | 原件=1 | 复印件=0\n居民身份证 | 必要 | 原件=1 | 复印件=0"
    )
    row[col("事项简介")] = "养蜂人跨县转场放蜂前开具的证明。"
    row[col("受理条件")] = "持有蜂群检疫合格证明的养蜂人"
    row[col("条件规则")] = ""
    out = io.StringIO()
    csv.writer(out).writerows([header, row])
    r = await client.post(
        f"{CATALOGUE_API}/import",
        files={"file": ("目录.csv", out.getvalue().encode(), "text/csv")},
        headers=admin,
    )
    assert r.status_code == 200, r.text
