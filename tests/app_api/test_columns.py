"""Column discovery, manifest validation, admin enable/disable/order, and the home screen."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from app_api.platform.column import CATEGORIES, Column, ColumnManifest
from app_api.platform.home.loader import ColumnLoadError, discover
from tests.conftest import LoginFn

ROOT = Path(__file__).resolve().parents[2]


def discovered() -> dict[str, Column]:
    return discover(strict=False).columns


def test_every_registered_column_loads() -> None:
    assert discover(strict=False).broken == {}


@pytest.mark.parametrize("slug", sorted(discovered()))
def test_column_contract(slug: str) -> None:
    """Runs over every discovered column: manifest, folder, entry point, router, table prefixes."""
    from sqlmodel import SQLModel

    col = discovered()[slug]
    m = col.manifest
    assert m.category in CATEGORIES
    assert col.package.rsplit(".", 1)[-1] == slug
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="wojia.columns")}
    assert eps[slug] == col.package
    router_mod = col.submodule("router")
    assert router_mod is not None and router_mod.router.routes, "a column serves at least one route"
    models = col.submodule("models")
    if models is not None:
        tables = [
            t
            for t in SQLModel.metadata.tables.values()
            if any(
                getattr(v, "__tablename__", None) == t.name
                and getattr(v, "__module__", "").startswith(col.package)
                for v in vars(models).values()
            )
        ]
        for t in tables:
            assert t.name.startswith(f"{slug}_"), f"table {t.name} must be prefixed with {slug}_"
    assert (ROOT / "columns" / slug / "manifest.toml").exists() or col.package != f"columns.{slug}"


def test_manifest_is_strict() -> None:
    good = {
        "slug": "water",
        "name": "水费",
        "version": "1.0.0",
        "category": "查询缴费",
        "identity_level": 1,
        "icon": "drop",
    }
    assert ColumnManifest.model_validate(good).slug == "water"
    for bad in (
        {**good, "category": "购物"},
        {**good, "identity_level": 5},
        {**good, "slug": "Water!"},
        {**good, "colour": "red"},
        {**good, "version": "one"},
    ):
        with pytest.raises(ValidationError):
            ColumnManifest.model_validate(bad)


def test_broken_column_is_skipped_in_dev_and_stops_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint(name="ghost", value="columns.ghost_missing", group="wojia.test")
    monkeypatch.setattr("app_api.platform.home.loader.entry_points", lambda group: [ep])
    loaded = discover(strict=False, group="wojia.test")
    assert "ghost" in loaded.broken and not loaded.columns
    with pytest.raises(ColumnLoadError):
        discover(strict=True, group="wojia.test")


def test_entry_point_name_must_match_slug(monkeypatch: pytest.MonkeyPatch) -> None:
    ep = importlib.metadata.EntryPoint(name="bulletins", value="columns.notices", group="wojia.test")
    monkeypatch.setattr("app_api.platform.home.loader.entry_points", lambda group: [ep])
    with pytest.raises(ColumnLoadError, match="does not match"):
        discover(strict=True, group="wojia.test")


async def test_home_lists_columns_by_category(client: httpx.AsyncClient, login: LoginFn) -> None:
    h = await login()
    home = (await client.get("/api/v1/home", headers=h)).json()
    assert home["mode"] == "standard"
    names = [c["name"] for c in home["categories"]]
    assert names == [c for c in CATEGORIES if c in names]
    notices = next(c for cat in home["categories"] for c in cat["columns"] if c["slug"] == "notices")
    assert notices["name"] == "城市公告" and notices["available"] is True and notices["identity_level"] == 0


async def test_admin_disable_enable_reorder_recategorise(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    resident = await login()

    def slugs(home: dict) -> list[str]:
        return [c["slug"] for cat in home["categories"] for c in cat["columns"]]

    r = await client.patch("/api/v1/admin/columns/notices", json={"enabled": False}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert "notices" not in slugs((await client.get("/api/v1/home", headers=resident)).json())
    r = await client.get("/api/v1/columns/notices/notices")
    assert r.status_code == 404 and r.json()["code"] == "columns.disabled"

    r = await client.patch(
        "/api/v1/admin/columns/notices", json={"enabled": True, "category": "居家生活"}, headers=admin
    )
    assert r.status_code == 200
    home = (await client.get("/api/v1/home", headers=resident)).json()
    cat = next(c for c in home["categories"] if any(x["slug"] == "notices" for x in c["columns"]))
    assert cat["name"] == "居家生活"
    assert (await client.get("/api/v1/columns/notices/notices")).status_code == 200

    all_slugs = [
        c["slug"] for c in (await client.get("/api/v1/admin/columns", headers=admin)).json()["columns"]
    ]
    new_order = list(reversed(all_slugs))
    r = await client.put("/api/v1/admin/columns/order", json={"slugs": new_order}, headers=admin)
    assert r.status_code == 200
    listed = [c["slug"] for c in (await client.get("/api/v1/admin/columns", headers=admin)).json()["columns"]]
    assert listed == new_order

    r = await client.patch("/api/v1/admin/columns/notices", json={"category": "购物"}, headers=admin)
    assert r.status_code == 422
    r = await client.patch("/api/v1/admin/columns/nonexistent", json={"enabled": False}, headers=admin)
    assert r.status_code == 404
    r = await client.put("/api/v1/admin/columns/order", json={"slugs": ["notices", "notices"]}, headers=admin)
    assert r.status_code == 422
    await client.patch("/api/v1/admin/columns/notices", json={"category": "城市资讯"}, headers=admin)

    audit = (
        await client.get("/api/v1/admin/audit", params={"action": "columns.changed"}, headers=admin)
    ).json()
    assert any(
        e["subject_id"] == "notices" and e["data"]["after"]["enabled"] is False for e in audit["items"]
    )


async def test_notices_column_publish_and_read(client: httpx.AsyncClient, login: LoginFn) -> None:
    admin = await login(roles=["admin"])
    body = {
        "title": "城区部分路段停水通知",
        "body": "因管网维修，11月25日8时至18时停水。",
        "department": "市自来水公司",
        "kind": "停水预告",
    }
    r = await client.post("/api/v1/columns/notices/notices", json=body, headers=admin)
    assert r.status_code == 201
    nid = r.json()["id"]
    listed = (await client.get("/api/v1/columns/notices/notices", params={"kind": "停水预告"})).json()
    assert any(n["id"] == nid for n in listed["items"])
    resident = await login()
    r = await client.post("/api/v1/columns/notices/notices", json=body, headers=resident)
    assert r.status_code == 403
    r = await client.post("/api/v1/columns/notices/notices", json={**body, "kind": "广告"}, headers=admin)
    assert r.status_code == 422
    assert (await client.delete(f"/api/v1/columns/notices/notices/{nid}", headers=admin)).status_code == 204
    r = await client.get(f"/api/v1/columns/notices/notices/{nid}")
    assert r.status_code == 404 and r.json()["code"] == "notices.not_found"


async def test_column_level_gate(
    client: httpx.AsyncClient, login: LoginFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A column needing L2 refuses an L1 caller on its non-open routes with the level needed."""
    from fastapi import APIRouter, FastAPI

    from app_api.platform.access import CurrentAccount
    from app_api.platform.home.router import column_gate, registry
    from app_api.platform.home.service import ColumnView

    class FakeRegistry:
        async def view(self, slug: str) -> ColumnView:
            return ColumnView(
                slug=slug,
                name="公积金",
                icon="x",
                category="查询缴费",
                identity_level=2,
                position=1,
                enabled=True,
                elderly=False,
                description="",
                version="1.0.0",
            )

    probe = FastAPI()
    from app_api.wiring.app import install_error_handlers

    install_error_handlers(probe)
    r = APIRouter()

    @r.get("/balance")
    async def balance(p: CurrentAccount) -> dict[str, int]:
        return {"balance_fen": 1}

    from fastapi import Depends

    probe.include_router(r, prefix="/c", dependencies=[Depends(column_gate("fund", set(), 2))])
    probe.dependency_overrides[registry] = lambda: FakeRegistry()
    h = await login()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe), base_url="http://t") as c:
        resp = await c.get("/c/balance", headers=h)
    assert resp.status_code == 403
    assert resp.json()["code"] == "identity.level_required" and resp.json()["level_required"] == 2
