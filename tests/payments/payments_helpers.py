"""Helpers shared by the payments tests (imported by plain name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx

# (order_id, purpose_ref) each time the test column's paid handler ran.
PAID_CALLS: list[tuple[str, str]] = []


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    """Poll until ``predicate()`` holds (notifications arrive on the sandbox's own schedule)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def control(server: Any, path: str, **payload: Any) -> Any:
    """Drive a sandbox's control endpoint (play the payer, settle refunds, release notifications)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.post(path, json=payload)
        response.raise_for_status()
        return response.json()


def order_no() -> str:
    return "T" + secrets.token_hex(10)
