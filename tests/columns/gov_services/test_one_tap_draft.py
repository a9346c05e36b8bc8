"""The one-tap draft written by the statement that reads the item (PostgreSQL; issue 16 item 5).

It is built from the item's version as this process last saw it, and inserted only if that version
is still the current one of an active item. Otherwise (another process published a new version,
or withdrew the item) and on a conflict (the same client key, a taken application number), the
request decides from what it read, as before. On SQLite every tap goes that way: the outcomes the
resident sees are the same on both."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from tests.columns.gov_services.conftest import API
from tests.columns.gov_services.test_submit_statements import CERTS, ITEM, _resident, held_jobs
from tests.conftest import LoginFn
from tests.conftest import counted_statements as counted

__all__ = ["held_jobs"]  # the fixture, shared with the statement count
GROUPS = ["person", "certificate"]


async def _own_item(**changes: Any) -> str:
    """A copy of the elderly allowance item under a code of this test's own (the catalogue is shared
    by the session's tests): every material by e-certificate, so a tap submits."""
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store
    from columns.gov_services.catalogue import CatalogueItem

    code = f"T-{uuid.uuid4().hex[:10].upper()}"
    async with session_scope() as s:
        _, item = await catalogue_store.get_item(s, code=ITEM)
        copy = CatalogueItem.model_validate({**item.model_dump(), "code": code, **changes})
        await catalogue_store.upsert_items(s, items=[copy], actor_id=None)
    return code


async def _published_elsewhere(code: str, **changes: Any) -> None:
    """Another process publishes a new version of the item: this process's own knowledge of the
    current version is not updated (``upsert_items`` does not read it through ``get_item``)."""
    from app_api.core.db import session_scope
    from columns.gov_services import catalogue_store
    from columns.gov_services.catalogue import CatalogueItem
    from columns.gov_services.models import Item, ItemVersion

    async with session_scope() as s:
        _, version = (
            await s.exec(
                select(Item, ItemVersion)
                .join(ItemVersion, col(ItemVersion.id) == col(Item.current_version_id))
                .where(Item.code == code)
            )
        ).one()
        current = catalogue_store.version_item(version)
        changed = CatalogueItem.model_validate({**current.model_dump(), **changes})
        await catalogue_store.upsert_items(s, items=[changed], actor_id=None)


async def _applications(code: str) -> list[Any]:
    from app_api.core.db import sessionmaker
    from columns.gov_services.models import Application

    async with sessionmaker()() as s:
        rows = await s.exec(
            select(Application).where(Application.item_code == code).order_by(col(Application.created_at))
        )
        return list(rows.all())


async def _tap(client: httpx.AsyncClient, headers: dict[str, str], code: str, key: str) -> httpx.Response:
    return await client.post(
        f"{API}/applications/one-tap",
        json={"item_code": code, "client_key": key, "groups": GROUPS},
        headers=headers,
    )


async def test_a_tap_after_another_process_published_a_new_version_is_filed_under_the_new_one(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str], is_postgres: bool
) -> None:
    from columns.gov_services import catalogue_store

    code = await _own_item()
    r = await _resident(client, login, CERTS)
    guide = (await client.get(f"{API}/items/{code}")).json()
    first = await _tap(client, r.headers, code, uuid.uuid4().hex)
    assert first.status_code == 201, first.text
    assert first.json()["item_version"] == guide["version"] == 1
    seen = catalogue_store.current_hint(code)
    assert seen is not None and seen[1] == 1

    await _published_elsewhere(code, promised_days=guide["promised_days"] + 3)
    stale = catalogue_store.current_hint(code)
    assert stale is not None and stale[0] == seen[0]  # this process still takes version 1 as current
    with counted() as statements:
        second = await _tap(client, r.headers, code, uuid.uuid4().hex)
    assert second.status_code == 201, second.text
    app = second.json()
    assert app["status"] == "submitted" and app["item_version"] == 2
    assert app["limit_days"] == guide["promised_days"] + 3
    assert [e["kind"] for e in app["timeline"]] == ["drafted", "prefilled", "submitted"]
    assert [(a.item_version, a.status) for a in await _applications(code)] == [
        (1, "submitted"),
        (2, "submitted"),
    ]
    now = catalogue_store.current_hint(code)
    assert now is not None and now[1] == 2  # learnt from the read
    if is_postgres:
        # The draft under the stale version was not written; the request drafted on its own.
        assert any(s.startswith("INSERT INTO gov_services_application") for s in statements)


async def test_a_tap_on_an_item_withdrawn_by_another_process_drafts_nothing(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str]
) -> None:
    from app_api.core.db import session_scope
    from columns.gov_services.models import Item

    code = await _own_item()
    r = await _resident(client, login, CERTS)
    key = uuid.uuid4().hex
    assert (await _tap(client, r.headers, code, key)).status_code == 201
    async with session_scope() as s:
        await s.exec(sa.update(Item).where(col(Item.code) == code).values(active=False))
    resp = await _tap(client, r.headers, code, uuid.uuid4().hex)
    assert resp.status_code == 404 and resp.json()["code"] == "gov_services.item_not_found"
    # The tap made before the withdrawal is still given back for its key.
    again = await _tap(client, r.headers, code, key)
    assert again.status_code == 200 and again.json()["status"] == "submitted"
    assert len(await _applications(code)) == 1


async def test_a_taken_application_number_is_drawn_again(
    client: httpx.AsyncClient,
    login: LoginFn,
    gov_catalogue: None,
    held_jobs: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from columns.gov_services import applications

    code = await _own_item()
    r = await _resident(client, login, CERTS)
    first = await _tap(client, r.headers, code, uuid.uuid4().hex)
    assert first.status_code == 201, first.text
    taken = first.json()["number"]
    real = applications._new_number
    draws = iter([taken])
    monkeypatch.setattr(applications, "_new_number", lambda: next(draws, None) or real())
    second = await _tap(client, r.headers, code, uuid.uuid4().hex)
    assert second.status_code == 201, second.text
    assert second.json()["number"] != taken and second.json()["status"] == "submitted"
    assert sorted(a.number for a in await _applications(code)) == sorted([taken, second.json()["number"]])


async def test_two_taps_at_once_with_one_key_make_one_application(
    client: httpx.AsyncClient, login: LoginFn, gov_catalogue: None, held_jobs: list[str], is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("concurrent writers need PostgreSQL")
    code = await _own_item()
    r = await _resident(client, login, CERTS)
    await client.get(f"{API}/items/{code}")  # the version known: both take the one-statement draft
    key = uuid.uuid4().hex
    answers = await asyncio.gather(*(_tap(client, r.headers, code, key) for _ in range(2)))
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert len(await _applications(code)) == 1
    assert len(held_jobs) == 1  # one message
