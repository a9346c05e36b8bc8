from __future__ import annotations

import os


async def test_dev_center_knows_every_demo_resident(center, live_url):
    """The development center, mounted by the app at /sandbox/provident_fund (``column.dev_sandbox``),
    answers for each seeded resident."""
    from app_api.platform.demo import RESIDENTS
    from columns.provident_fund.center import get_center
    from columns.provident_fund.config import DEV_CENTER_SECRET, get_config

    saved = {
        k: os.environ[k]
        for k in ("WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL", "WOJIA_COLUMN_PROVIDENT_FUND_SECRET")
    }
    os.environ["WOJIA_COLUMN_PROVIDENT_FUND_CENTER_URL"] = f"{live_url}/sandbox/provident_fund"
    os.environ["WOJIA_COLUMN_PROVIDENT_FUND_SECRET"] = DEV_CENTER_SECRET
    get_config.cache_clear()
    try:
        people = [await get_center().person(r.id_number) for r in RESIDENTS]
        rule = await get_center().loan_rule()
    finally:
        os.environ.update(saved)
        get_config.cache_clear()
    assert [p["name"] for p in people] == [r.name for r in RESIDENTS]
    assert all(p["balance_fen"] > 0 for p in people)
    assert {p["status"] for p in people} == {"正常缴存", "封存"}  # the 1949-born resident is retired
    assert rule["rule_id"] == "BZGJJ-DK-2025-01"
