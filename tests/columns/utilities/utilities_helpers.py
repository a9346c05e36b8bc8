"""Shared by the utilities tests: biller sandboxes on loopback and playing the payer at the
payment providers' sandboxes."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from columns.utilities.sandbox.biller import BillerSandbox, SandboxBill, sandbox_app

BILLER_SECRET = "test-biller-secret-" + secrets.token_hex(4)
# Short, so the two timeout tests are quick (the sandbox's "timeout" fault sleeps 2 s), but long
# enough that a loaded 2-core CI machine reaches a loopback server well within it.
BILLER_TIMEOUT_S = 1.0


def configure_billers(url: str) -> None:
    """Point the column at the sandboxes (before anything reads the column's settings)."""
    from columns.utilities import adapters
    from columns.utilities.config import get_config

    os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = json.dumps(
        [
            {
                "code": code,
                "kind": code,
                "name": name,
                "base_url": f"{url}/{code}",
                "secret": BILLER_SECRET,
                "timeout_s": BILLER_TIMEOUT_S,
            }
            for code, name in (
                ("water", "亳州市自来水公司"),
                ("power", "国网亳州供电公司"),
                ("gas", "亳州港华燃气"),
            )
        ]
    )
    get_config.cache_clear()
    adapters.reset_adapters()


def make_billers() -> dict[str, BillerSandbox]:
    return {
        code: BillerSandbox(code, BILLER_SECRET, timeout_sleep_s=2.0) for code in ("water", "power", "gas")
    }


def new_account_no(prefix: str = "W") -> str:
    return prefix + f"{secrets.randbelow(10**10):010d}"


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def pay_at_provider(
    sandbox_urls: dict[str, str], provider: str, out_trade_no: str, client_params: dict[str, str]
) -> None:
    """Play the resident confirming the payment in the wallet."""
    payload: dict[str, Any] = {"out_trade_no": out_trade_no}
    if provider == "alipay" and "orderStr" in client_params:
        payload = {"order_string": client_params["orderStr"]}
    async with httpx.AsyncClient(base_url=sandbox_urls[provider], timeout=30) as c:
        r = await c.post("/_sandbox/pay", json=payload)
        r.raise_for_status()


def bill(
    account_no: str, period: str, amount_fen: int, due_in_days: int, usage: str = "12 吨"
) -> SandboxBill:
    import datetime as dt

    return SandboxBill(
        f"{account_no}-{period}", period, amount_fen, dt.date.today() + dt.timedelta(days=due_in_days), usage
    )


__all__ = ["BillerSandbox", "sandbox_app"]
