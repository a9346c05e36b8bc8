"""The assistant reads a resident's unpaid bills through the utility_bills capability, and only theirs."""

from __future__ import annotations

from test_utilities_flow import household

from app_api.core.db import session_scope
from bot.sources import Sources


async def test_unpaid_bills_for_the_assistant(client, login, billers):
    headers, _acct = await household(client, login, billers, amounts=(3650, 4120))
    me = (await client.get("/api/v1/me", headers=headers)).json()
    async with session_scope() as s:
        bills = await Sources(s).unpaid_bills(me["id"])
    assert bills is not None
    assert sorted(b["amount_fen"] for b in bills) == [3650, 4120]
    assert all(b["title"].startswith("水费 2026-") for b in bills)

    stranger = await login()
    other = (await client.get("/api/v1/me", headers=stranger)).json()
    async with session_scope() as s:
        assert await Sources(s).unpaid_bills(other["id"]) == []
