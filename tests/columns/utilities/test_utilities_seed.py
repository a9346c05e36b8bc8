from __future__ import annotations

API = "/api/v1/columns/utilities"


async def test_seeded_households_list_bills_from_the_demo_billers(client, login, billers):
    from utilities_helpers import BILLER_SECRET

    from app_api.core.db import session_scope
    from columns.utilities.sandbox.demo import demo_sandboxes
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


async def test_development_billers_are_served_by_the_app(client, login, live_url, billers):
    """In development the app serves the demo billers at /sandbox/utilities (``column.dev_sandbox``)."""
    import json
    import os

    from columns.utilities import adapters
    from columns.utilities.config import DEV_BILLER_SECRET, get_config

    saved = os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"]
    os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = json.dumps(
        [
            {
                "code": "water",
                "kind": "water",
                "name": "亳州市自来水公司",
                "base_url": f"{live_url}/sandbox/utilities/water",
                "secret": DEV_BILLER_SECRET,
            }
        ]
    )
    get_config.cache_clear()
    adapters.reset_adapters()
    try:
        headers = await login()
        r = await client.post(
            f"{API}/bindings",
            headers=headers,
            json={"biller_code": "water", "account_no": "W3416000001", "holder_name": "李秀英"},
        )
        assert r.status_code == 201, r.text
        [account] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"]
        assert [b["period"] for b in account["bills"]] == ["2026-10", "2026-11"]
    finally:
        os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = saved
        get_config.cache_clear()
        adapters.reset_adapters()
