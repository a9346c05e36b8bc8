"""A resident's applications page by cursor: every application once, newest first, also while a new
one is started between pages; bounded parameters."""

from __future__ import annotations

import httpx

from app_api.core.db import session_scope
from columns.gov_services.models import Application
from tests.app_api.paging_helpers import check_bounds, check_walk, newest_first, schedule, walk
from tests.columns.gov_services.conftest import API, make_resident, new_application
from tests.conftest import LoginFn

OLD_AGE = "BZ-MZ-001"


async def test_my_applications_page_by_cursor_while_one_is_started(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None
) -> None:
    r = await make_resident(client, login, level=2)
    ids = [(await new_application(client, r, OLD_AGE))["id"] for _ in range(5)]
    times = schedule(5)
    async with session_scope() as s:  # dated in the past, two at the same instant
        for app_id, at in zip(ids, times, strict=True):
            app = await s.get(Application, app_id)
            assert app is not None
            app.created_at = at
            s.add(app)
    expected = newest_first(list(zip(times, ids, strict=True)))
    late: list[str] = []

    async def started() -> None:
        late.append((await new_application(client, r, OLD_AGE))["id"])

    seen, pages = await walk(
        client,
        f"{API}/applications",
        r.headers,
        key="applications",
        limit=2,
        item_id=lambda i: i["id"],
        between=started,
    )
    check_walk(seen, expected, late=late[0])
    assert pages == 3
    # Without parameters: the newest 50, as before, and no next page.
    body = (await client.get(f"{API}/applications", headers=r.headers)).json()
    assert [a["id"] for a in body["applications"]] == [late[0], *expected] and body["next_cursor"] is None


async def test_my_applications_bounds(client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None) -> None:
    r = await make_resident(client, login, level=2)
    await check_bounds(client, f"{API}/applications", r.headers)
