"""A login that fails because the database went away (503) does not burn the resident's SMS code:
the retry with the same code succeeds. A login refused for another reason still spends it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app_api.platform.accounts import service
from tests.conftest import new_phone, sms_code


async def _code(client: httpx.AsyncClient, phone: str) -> str:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202, r.text
    return await sms_code(client, phone)


def _database_goes_away(monkeypatch: pytest.MonkeyPatch, times: int = 1) -> None:
    """The connection drops in the middle of the login's unit of work, as when PostgreSQL is killed."""
    real = service.get_or_create_resident
    left = [times]

    async def flaky(session: Any, *, phone: str) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise sa.exc.OperationalError("SELECT app_account", {}, ConnectionRefusedError(111, "refused"))
        return await real(session, phone=phone)

    monkeypatch.setattr(service, "get_or_create_resident", flaky)


async def test_the_code_survives_a_login_answered_503(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    phone = new_phone()
    code = await _code(client, phone)
    _database_goes_away(monkeypatch)
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 503 and r.json()["code"] == "app.unavailable", r.text
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 200, r.text
    # Used once it worked: a third try is refused.
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": code})
    assert r.status_code == 400 and r.json()["code"] == "auth.code_invalid"


async def test_a_login_refused_for_another_reason_still_spends_the_code(client: httpx.AsyncClient) -> None:
    from app_api.core.db import session_scope

    staff_phone = new_phone()
    async with session_scope() as s:  # a staff account must log in with its password
        await service.create_staff(s, phone=staff_phone, password="Reviewer-pass-2026", roles=["reviewer"])
    code = await _code(client, staff_phone)
    r = await client.post("/api/v1/auth/login", json={"phone": staff_phone, "code": code})
    assert r.status_code in (400, 401, 403) and r.json()["code"] != "app.unavailable", r.text
    r = await client.post("/api/v1/auth/login", json={"phone": staff_phone, "code": code})
    assert r.json()["code"] == "auth.code_invalid", r.text
