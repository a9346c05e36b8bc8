"""The column offers a resident's unpaid bills as ``UtilityBills`` (the assistant reads them so), and
only theirs."""

from __future__ import annotations

from test_utilities_flow import household

from app_api.core.db import session_scope
from app_api.platform.capabilities import UtilityBills, lookup
from bot.sources import Sources


async def test_unpaid_bills_for_the_assistant(client, login, billers):
    bills_of = lookup(UtilityBills)
    assert bills_of is not None
    headers, _acct = await household(client, login, billers, amounts=(3650, 4120))
    me = (await client.get("/api/v1/me", headers=headers)).json()
    async with session_scope() as s:
        bills = await bills_of.unpaid_of(me["id"], session=s)
    assert sorted(b["amount_fen"] for b in bills) == [3650, 4120]
    assert all(b["title"].startswith("水费 2026-") and b["biller"] == "water" for b in bills)
    async with session_scope() as s:
        assert await Sources(s).unpaid_bills(me["id"]) == bills  # what the assistant reads
    # Without a session the capability opens its own.
    assert len(await bills_of.unpaid_of(me["id"])) == 2

    stranger = await login()
    other = (await client.get("/api/v1/me", headers=stranger)).json()
    assert await bills_of.unpaid_of(other["id"]) == []
