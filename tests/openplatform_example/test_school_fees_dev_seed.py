"""The development seed registers the example column (docs/examples/school_fees) for `make run`: once,
enabled, with its cashier and approved template, and writes the credentials file run.sh reads; the
example's own client signs in to the platform with them. Outside development it does nothing."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from school_fees.platform import Config, Platform, PlatformError
from sqlmodel import func, select

from app_api.core.db import session_scope
from app_api.core.settings import get_settings
from app_api.platform.accounts.service import create_staff, find_by_phone
from app_api.platform.audit.models import AuditEvent
from app_api.platform.demo import DEMO_PASSWORD, STAFF
from app_api.platform.openplatform import demo
from app_api.platform.openplatform.cashier_models import CashierAccount
from app_api.platform.openplatform.component import component
from app_api.platform.openplatform.models import ColumnMessageTemplate, ExternalColumn


@pytest.fixture
def development(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(get_settings(), "environment", "development")
    yield


async def _demo_admin() -> None:
    phone, roles, extra = next(s for s in STAFF if "admin" in s[1])
    async with session_scope() as s:
        if await find_by_phone(s, phone) is None:
            await create_staff(s, phone=phone, password=DEMO_PASSWORD, roles=roles, **extra)


async def _seed(path: Path) -> str:
    async with session_scope() as s:
        return await demo.seed(s, path=path)


async def _columns() -> list[ExternalColumn]:
    async with session_scope() as s:
        q = select(ExternalColumn).where(ExternalColumn.name == demo.COLUMN.name)
        return list((await s.exec(q)).all())


async def _example(
    client: httpx.AsyncClient, creds: dict[str, str], cashier_key: str | None = None
) -> Platform:
    """The example's own client of the published interface, configured as run.sh configures it."""
    issuer = (await client.get("/.well-known/openid-configuration")).json()["issuer"]
    cfg = Config(
        issuer=issuer,
        client_id=creds["SCHOOL_FEES_CLIENT_ID"],
        client_secret=creds["SCHOOL_FEES_CLIENT_SECRET"],
        cashier_key=cashier_key or creds["SCHOOL_FEES_CASHIER_KEY"],
        redirect_uri=demo.PUBLIC_URL + "/oidc/callback",
    )
    return Platform(cfg, client)


async def test_the_seed_registers_the_example_once_and_its_credentials_work(
    development: None, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    await _demo_admin()
    path = tmp_path / "school_fees.env"
    first = await _seed(path)
    assert "registered" in first and "template approved" in first, first
    written = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # A second seed (the next `make run`) changes nothing: no second column, no new secret.
    assert (await _seed(path)).endswith(": unchanged")
    assert path.read_bytes() == written
    [column] = await _columns()
    assert column.enabled and column.url == demo.PUBLIC_URL + "/"
    async with session_scope() as s:
        registered = await s.exec(
            select(func.count()).where(
                AuditEvent.action == "openplatform.column_registered", AuditEvent.subject_id == column.id
            )
        )
        assert registered.one() == 1
        account = await s.get(CashierAccount, column.id)
        assert account is not None and account.notify_url == demo.NOTIFY_URL
        [template] = (
            await s.exec(select(ColumnMessageTemplate).where(ColumnMessageTemplate.column_id == column.id))
        ).all()
        assert (template.key, template.status) == (demo.TEMPLATE_KEY, "approved")

    # The example's client, with the file's credentials: the client secret passes HTTP Basic (it
    # sees its approved template), the cashier key signs a request the cashier accepts (the order
    # is unknown, not the signature), and a wrong key is refused, so the 404 is no accident.
    creds = demo.read_credentials(path)
    assert creds["SCHOOL_FEES_CLIENT_ID"] == column.client_id
    example = await _example(client, creds)
    assert "authorization_endpoint" in await example.discovery()
    listed = (await example.templates())["templates"]
    assert [(t["key"], t["status"]) for t in listed] == [(demo.TEMPLATE_KEY, "approved")]
    with pytest.raises(PlatformError) as e:
        await example.order("no-such-order")
    assert (e.value.status, e.value.code) == (404, "openplatform.cashier_order_not_found")
    with pytest.raises(PlatformError) as e:
        await (await _example(client, creds, cashier_key="x" * 43)).order("no-such-order")
    assert (e.value.status, e.value.code) == (401, "openplatform.cashier_signature_invalid")

    # The file lost (a fresh checkout against the same database): the hashed client secret cannot be
    # read back, so it is rotated; the old one stops working, the new file's works.
    path.unlink()
    rotated = await _seed(path)
    assert "client secret rotated" in rotated and "registered" not in rotated, rotated
    again = demo.read_credentials(path)
    assert again["SCHOOL_FEES_CLIENT_ID"] == creds["SCHOOL_FEES_CLIENT_ID"]
    assert again["SCHOOL_FEES_CASHIER_KEY"] == creds["SCHOOL_FEES_CASHIER_KEY"]
    assert again["SCHOOL_FEES_CLIENT_SECRET"] != creds["SCHOOL_FEES_CLIENT_SECRET"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(PlatformError) as e:
        await (await _example(client, creds)).templates()
    assert e.value.status == 401
    assert (await (await _example(client, again)).templates())["templates"]
    assert len(await _columns()) == 1


@pytest.mark.parametrize("environment", ["production", "test"])
async def test_outside_development_the_seed_does_nothing(
    environment: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(get_settings(), "environment", environment)
    monkeypatch.setattr(demo, "credentials_path", lambda: tmp_path / "school_fees.env")
    await _demo_admin()
    before = [(c.id, c.client_secret_hash) for c in await _columns()]
    assert component.seed is not None
    async with session_scope() as s:
        result = await component.seed(s)
    assert "skipped" in result
    assert not (tmp_path / "school_fees.env").exists()
    assert [(c.id, c.client_secret_hash) for c in await _columns()] == before
