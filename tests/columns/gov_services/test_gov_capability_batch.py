"""The catalogue capability's batch form: several residents' applications in one call, each list
exactly what ``my_applications`` gives that resident, and nobody else's."""

from __future__ import annotations

import httpx

from tests.columns.gov_services.conftest import make_resident, new_application
from tests.conftest import LoginFn


async def test_applications_of_residents_is_my_applications_of_each(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    from app_api.platform.capabilities import ServiceCatalogue, lookup

    cap = lookup(ServiceCatalogue)
    assert cap is not None
    one = await make_resident(client, login, level=2)
    two = await make_resident(client, login, level=2)
    none = await make_resident(client, login, level=2)
    ones = [await new_application(client, one, "BZ-MZ-001") for _ in range(3)]
    twos = [await new_application(client, two, "BZ-MZ-001")]

    got = await cap.applications_of_residents([one.account_id, two.account_id, none.account_id], limit=2)
    assert set(got) == {one.account_id, two.account_id, none.account_id}
    assert got[one.account_id] == await cap.my_applications(one.account_id, limit=2)
    # Two of the three, as my_applications pages them; the other resident's only one; nothing for
    # the third.
    assert len(got[one.account_id]) == 2 and {a["id"] for a in got[one.account_id]} < {a["id"] for a in ones}
    assert [a["id"] for a in got[two.account_id]] == [twos[0]["id"]]
    assert got[two.account_id][0]["status_name"] == "草稿"
    assert got[none.account_id] == []

    everything = await cap.applications_of_residents([one.account_id, one.account_id], limit=10)
    assert everything == {one.account_id: await cap.my_applications(one.account_id, limit=10)}
    assert await cap.applications_of_residents([]) == {}
