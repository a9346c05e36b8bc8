"""A new kind of biller (district heating) is configuration only: no change to the column."""

from __future__ import annotations

import json
import os

from utilities_helpers import BILLER_SECRET, bill, new_account_no

from columns.utilities.sandbox.biller import BillerSandbox
from payments.sandbox.common import serve_in_thread

API = "/api/v1/columns/utilities"


async def test_heating_biller_added_by_configuration(client, login, billers):
    from columns.utilities import adapters
    from columns.utilities.config import get_config

    heating = BillerSandbox("heat", BILLER_SECRET)
    server = serve_in_thread(heating.app)
    saved = os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"]
    configured = [
        *json.loads(saved),
        {
            "code": "bz_heat",
            "kind": "heating",
            "name": "亳州热力公司",
            "base_url": server.url,
            "secret": BILLER_SECRET,
            "adapter": "http_json",
            "account_no_pattern": r"^RL\d{8}$",
        },
    ]
    os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = json.dumps(configured)
    get_config.cache_clear()
    adapters.reset_adapters()
    try:
        assert "bz_heat" in [
            b["code"] for b in (await client.get(f"{API}/billers", headers=await login())).json()
        ]
        headers = await login()
        acct = "RL" + new_account_no("")[-8:]
        heating.add_account(acct, "马红霞", "谯城区", [bill(acct, "2026-11", 89000, 10, "95 平方米")])
        bad = await client.post(
            f"{API}/bindings",
            headers=headers,
            json={"biller_code": "bz_heat", "account_no": "W12345678", "holder_name": "马红霞"},
        )
        assert bad.status_code == 422 and bad.json()["code"] == "utilities.account_number_invalid"
        r = await client.post(
            f"{API}/bindings",
            headers=headers,
            json={"biller_code": "bz_heat", "account_no": acct, "holder_name": "马红霞"},
        )
        assert (
            r.status_code == 201
            and r.json()["kind_name"] == "暖气费"
            and r.json()["biller_name"] == "亳州热力公司"
        )
        [account] = (await client.get(f"{API}/bills", headers=headers)).json()["accounts"]
        assert [b["amount_fen"] for b in account["bills"]] == [89000]
    finally:
        os.environ["WOJIA_COLUMN_UTILITIES_BILLERS"] = saved
        get_config.cache_clear()
        adapters.reset_adapters()
        server.stop()
