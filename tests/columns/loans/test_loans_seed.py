from __future__ import annotations

API = "/api/v1/columns/loans"


async def test_seed_is_idempotent_and_matches_the_demo_officer(client, login):
    from app_api.core.db import session_scope
    from columns.loans.seed import seed

    async with session_scope() as s:
        first = await seed(s)
    async with session_scope() as s:
        again = await seed(s)
    assert first == "7 institutions and products" and again == "0 institutions and products"
    names = {p["name"]: p for p in (await client.get(f"{API}/products")).json()}
    assert names["药商贷"]["institution_name"] == "亳州药都农村商业银行"
    assert names["药商贷"]["applicant_types"] == ["business"]
    # The seeded officer's institution id is the one app_api.platform.demo gives the demo bank officer.
    from app_api.platform.demo import STAFF

    assert ("bank_officer" in STAFF[-1][1]) and STAFF[-1][2]["institution_id"] == "bozhou-rcb"
    # What that officer sees after the seed: the bank's two products, cheapest first, and no
    # applications yet (the seed publishes products; residents apply).
    officer = await login(roles=["bank_officer"], institution_id="bozhou-rcb")
    ours = (await client.get(f"{API}/products", params={"institution_id": "bozhou-rcb"})).json()
    assert [p["name"] for p in ours] == ["药都e贷", "药商贷"]
    r = await client.get(f"{API}/officer/applications", headers=officer)
    assert r.status_code == 200 and r.json() == {"items": [], "total": 0, "next_cursor": None}
    stats = (await client.get(f"{API}/officer/statistics", headers=officer)).json()
    assert (stats["applications"], stats["approvals"], stats["disbursed_fen"], stats["institutions"]) == (
        0,
        0,
        0,
        [],
    )
