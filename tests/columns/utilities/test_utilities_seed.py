from __future__ import annotations

API = "/api/v1/columns/utilities"


async def test_seeded_households_list_bills_from_the_demo_billers(client, login, billers):
    from utilities_helpers import BILLER_SECRET

    from app_api.db import session_scope
    from columns.utilities.sandbox import demo_sandboxes
    from columns.utilities.seed import seed

    # The test billers take on the development households.
    for code, demo in demo_sandboxes(BILLER_SECRET).items():
        for acct in demo.accounts.values():
            billers[code].add_account(acct.account_no, acct.holder_name, acct.address, acct.bills)
    async with session_scope() as s:
        first = await seed(s)
    async with session_scope() as s:
        again = await seed(s)
    assert first == "6 bound accounts" and again == "0 bound accounts"

    headers = await login("13800000001")
    listed = (await client.get(f"{API}/bills", headers=headers)).json()
    assert sorted(a["binding"]["kind"] for a in listed["accounts"]) == ["gas", "power", "water"]
    assert all(a["unavailable"] is None and len(a["bills"]) == 2 for a in listed["accounts"])
    assert all(a["binding"]["holder_masked"] == "张**" for a in listed["accounts"])
