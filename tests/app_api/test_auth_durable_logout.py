"""Logouts survive an empty Redis: revoked token families live in the database, Redis only caches them.

"Wiping Redis" here is FLUSHDB on the test's Redis database (the in-process stand-in, or the real
server's database given by ``WOJIA_REDIS_URL``) plus dropping the per-process caches, as a restarted
Redis and worker would leave them.
"""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from app_api.core.db import session_scope
from app_api.platform.accounts import revocation
from app_api.platform.accounts.models import RefreshToken, TokenRevocation
from app_api.platform.accounts.tokens import _hash
from tests.app_api.test_console_session import (
    CONSOLE,
    LOGIN,
    Browser,
    age_spent_refresh,
    browser,
    console_login,
    csrf_of,
    make_staff,
)
from tests.conftest import new_phone, sms_code

pytestmark = pytest.mark.asyncio
__all__ = ["browser"]  # the fixture, imported for this module's tests


async def wipe_redis() -> None:
    from app_api.core.cache import invalidate
    from app_api.core.redis import get_redis

    await (await get_redis()).flushdb()
    await invalidate("*", "*")


async def app_login(client: httpx.AsyncClient, phone: str) -> dict[str, str]:
    from app_api.core.redis import get_redis

    await (await get_redis()).delete(f"sms:cool:{phone}")
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202, r.text
    r = await client.post("/api/v1/auth/login", json={"phone": phone, "code": await sms_code(client, phone)})
    assert r.status_code == 200, r.text
    tokens: dict[str, str] = r.json()
    return tokens


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def me_status(client: httpx.AsyncClient, tokens: dict[str, str]) -> int:
    return (await client.get("/api/v1/me", headers=bearer(tokens))).status_code


async def refresh(client: httpx.AsyncClient, raw: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": raw})


async def test_logged_out_tokens_stay_refused_after_redis_is_wiped(client: httpx.AsyncClient) -> None:
    phone = new_phone()
    phone_login = await app_login(client, phone)
    tablet_login = await app_login(client, phone)  # the same resident, on another device
    assert (await client.post("/api/v1/auth/logout", headers=bearer(phone_login))).status_code == 204
    assert await me_status(client, phone_login) == 401

    await wipe_redis()

    r = await client.get("/api/v1/me", headers=bearer(phone_login))
    assert r.status_code == 401 and r.json()["code"] == "auth.token_invalid"
    assert (await refresh(client, phone_login["refresh_token"])).status_code == 401
    # The other login of the same account is untouched: its access and refresh tokens work.
    assert await me_status(client, tablet_login) == 200
    r = await refresh(client, tablet_login["refresh_token"])
    assert r.status_code == 200, r.text
    assert await me_status(client, r.json()) == 200


async def test_family_revoked_by_refresh_reuse_stays_revoked_after_wipe(client: httpx.AsyncClient) -> None:
    first = await app_login(client, new_phone())
    r = await refresh(client, first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    r = await refresh(client, first["refresh_token"])  # a copy of the spent token comes back
    assert r.status_code == 401 and r.json()["code"] == "auth.refresh_reused"

    await wipe_redis()

    assert await me_status(client, second) == 401
    assert (await refresh(client, second["refresh_token"])).status_code == 401
    async with session_scope() as s:
        claims_family = (
            await s.exec(
                select(RefreshToken).where(RefreshToken.token_hash == _hash(second["refresh_token"]))
            )
        ).one()
        row = await s.get(TokenRevocation, claims_family.family_id)
    assert row is not None and row.reason == "refresh_reused"


async def test_an_empty_cache_is_rebuilt_once_not_per_request(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a wipe the first check reads the database; the following ones, of any login, do not."""
    logins = [await app_login(client, new_phone()) for _ in range(3)]
    await wipe_redis()
    rebuilds = 0
    real = revocation._rebuild_and_check

    async def counting(family_id: str) -> bool:
        nonlocal rebuilds
        rebuilds += 1
        return await real(family_id)

    monkeypatch.setattr(revocation, "_rebuild_and_check", counting)
    for tokens in logins * 2:
        assert await me_status(client, tokens) == 200
        await wipe_local_caches()
    assert rebuilds == 1


async def wipe_local_caches() -> None:
    from app_api.core.cache import invalidate

    await invalidate("*", "*")


async def test_refresh_token_issued_while_its_family_was_revoked_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """A refresh racing a logout can leave a fresh token unmarked in a revoked family: the family wins."""
    tokens = await app_login(client, new_phone())
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    async with session_scope() as s:
        await s.exec(
            sa.update(RefreshToken)
            .where(col(RefreshToken.token_hash) == _hash(tokens["refresh_token"]))
            .values(revoked_at=None)
        )
    r = await refresh(client, tokens["refresh_token"])
    assert r.status_code == 401 and r.json()["code"] == "auth.token_invalid"


async def test_console_logout_survives_redis_wipe(browser: Browser, client: httpx.AsyncClient) -> None:
    phone, password, _ = await make_staff(["finance"])
    page, _ = await browser.follow(await console_login(browser, client, phone, password))
    assert "财务对账控制台" in page.text
    kept = dict(browser.jar)
    r = await browser.post("/api/v1/console/logout", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303 and r.headers["location"] == LOGIN

    await wipe_redis()

    browser.jar = kept  # someone kept the cookies of the logged-out login
    r, seen = await browser.follow(await browser.get(CONSOLE))
    assert seen[-1].startswith(LOGIN) and "财务对账控制台" not in r.text


async def test_console_grace_and_reuse_still_work_around_a_wipe(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    phone, password, _ = await make_staff(["finance"])
    await browser.follow(await console_login(browser, client, phone, password))
    stale = dict(browser.jar)
    first = await browser.get("/api/v1/console/refresh", params={"next": CONSOLE})
    assert first.status_code == 303 and first.headers["location"] == CONSOLE
    winner = dict(browser.jar)

    await wipe_redis()

    # A second tab within the grace is asked to retry, and the login carries on.
    browser.jar = dict(stale)
    second = await browser.get("/api/v1/console/refresh", params={"next": CONSOLE})
    assert second.status_code == 200 and "登录状态已在其他页面更新" in second.text
    browser.jar = dict(winner)
    assert (await browser.get(CONSOLE)).status_code == 200
    # After the grace, the old refresh cookie is a stolen copy: the whole login is revoked ...
    await age_spent_refresh(stale["wojia_console_refresh"][0])
    browser.jar = dict(stale)
    r, seen = await browser.follow(await browser.get("/api/v1/console/refresh", params={"next": CONSOLE}))
    assert seen[-1].startswith(LOGIN)

    await wipe_redis()

    # ... and stays revoked with an empty Redis.
    browser.jar = dict(winner)
    r, seen = await browser.follow(await browser.get(CONSOLE))
    assert seen and seen[-1].startswith(LOGIN) and "财务对账控制台" not in r.text
