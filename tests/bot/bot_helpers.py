"""Helpers shared by the assistant's tests."""

from __future__ import annotations

from typing import Any


async def catalogue_item(name: str) -> dict[str, Any]:
    """The catalogue's guide for what a resident calls ``name`` (through the same capability)."""
    from app_api.platform.column import get_capability

    cat = get_capability("service_catalogue")
    assert cat is not None, "the government services column offers no service_catalogue"
    hit = (await cat.search(name, limit=1))[0]
    item: dict[str, Any] = await cat.item(hit["code"])
    return item
