"""Column configuration (database, cached in Redis) and the home screen."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.cache import invalidate as invalidate_local
from app_api.core.cache import local_cache
from app_api.core.db import sessionmaker, utcnow
from app_api.core.errors import AppError, NotFound, ValidationFailed
from app_api.core.redis import get_redis
from app_api.platform import audit
from app_api.platform.column import CATEGORIES, Column
from app_api.platform.home.models import ColumnSetting

CACHE_KEY = "columns:config:v1"
EXTERNAL_CACHE_KEY = "columns:external:v1"
# Column settings change rarely and every change is broadcast; 30 s bounds a missed broadcast.
_views_local = local_cache("columns", ttl_s=30.0)
ELDERLY_MAX = 6


class ColumnDisabled(AppError):
    code = "columns.disabled"
    title = "该栏目暂未开放"
    status = 404


@dataclass(frozen=True)
class ColumnView:
    slug: str
    name: str
    icon: str
    category: str
    identity_level: int
    position: int
    enabled: bool
    elderly: bool
    description: str
    version: str
    # An external column (``app_api.platform.openplatform``): a web page on its operator's server,
    # opened at ``url`` (the resident signs in to it with the city's account); "" for a built-in one.
    url: str = ""


async def invalidate_views() -> None:
    """Drop the cached column views here, in Redis and in every other worker (after a change to a
    built-in or an external column)."""
    r = await get_redis()
    await r.delete(CACHE_KEY, EXTERNAL_CACHE_KEY)
    await invalidate_local("columns", "*")


class Registry:
    """The loaded columns; the app keeps one on ``app.state.columns``."""

    def __init__(self, columns: dict[str, Column], broken: dict[str, str]) -> None:
        self.columns = columns
        self.broken = broken

    async def views(self) -> list[ColumnView]:
        hit = _views_local.get("views")
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        views = await self._views_shared()
        _views_local.set("views", views)
        return views

    async def _views_shared(self) -> list[ColumnView]:
        r = await get_redis()
        raw = await r.get(CACHE_KEY)
        if raw is not None:
            return [ColumnView(**d) for d in json.loads(raw)]
        async with sessionmaker()() as s:
            settings = {c.slug: c for c in (await s.exec(select(ColumnSetting))).all()}
        views = []
        for slug, col in self.columns.items():
            m = col.manifest
            st = settings.get(slug)
            views.append(
                ColumnView(
                    slug=slug,
                    name=m.name,
                    icon=m.icon,
                    category=(st.category if st and st.category else m.category),
                    identity_level=m.identity_level,
                    position=st.position if st else m.order,
                    enabled=st.enabled if st else True,
                    elderly=m.elderly,
                    description=m.description,
                    version=m.version,
                )
            )
        views.sort(key=lambda v: (v.position, v.slug))
        await r.set(CACHE_KEY, json.dumps([asdict(v) for v in views], ensure_ascii=False), ex=300)
        return views

    async def home_views(self) -> list[ColumnView]:
        """The built-in columns and the enabled external ones, in one order: what the home screen
        lists. (Admin screens and the column gate see the built-in ones only, ``views``.)"""
        hit = _views_local.get("home_views")
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        r = await get_redis()
        raw = await r.get(EXTERNAL_CACHE_KEY)
        if raw is not None:
            external = [ColumnView(**d) for d in json.loads(raw)]
        else:
            external = await _external_views()
            await r.set(
                EXTERNAL_CACHE_KEY, json.dumps([asdict(v) for v in external], ensure_ascii=False), ex=300
            )
        views = sorted([*await self.views(), *external], key=lambda v: (v.position, v.slug))
        _views_local.set("home_views", views)
        return views

    async def view(self, slug: str) -> ColumnView:
        for v in await self.views():
            if v.slug == slug:
                return v
        raise NotFound("未找到该栏目", slug=slug)

    async def invalidate(self) -> None:
        await invalidate_views()


async def _external_views() -> list[ColumnView]:
    """The enabled external columns, beside the built-in ones (same categories, levels and order)."""
    from app_api.platform.openplatform.models import ExternalColumn

    async with sessionmaker()() as s:
        rows = (await s.exec(select(ExternalColumn).where(ExternalColumn.enabled == True))).all()  # noqa: E712
    return [
        ColumnView(
            slug=f"ext-{c.client_id}",
            name=c.name,
            icon=c.icon,
            category=c.category,
            identity_level=c.identity_level,
            position=c.order,
            enabled=True,
            elderly=False,
            description=f"由第三方提供的服务，登录时需经您同意授权（运营方：{c.operator_contact}）",
            version="external",
            url=c.url,
        )
        for c in rows
    ]


def home_screen(views: list[ColumnView], *, level: int | None, elderly: bool) -> dict[str, Any]:
    enabled = [v for v in views if v.enabled]

    def item(v: ColumnView) -> dict[str, Any]:
        return {
            "slug": v.slug,
            "name": v.name,
            "icon": v.icon,
            "description": v.description,
            "identity_level": v.identity_level,
            "available": level is not None and level >= v.identity_level,
            "path": v.url or f"/api/v1/columns/{v.slug}",
            "external": bool(v.url),
        }

    if elderly:
        # Fewer, larger entries in a fixed order: the columns marked for elderly mode first.
        chosen = ([v for v in enabled if v.elderly] + [v for v in enabled if not v.elderly])[:ELDERLY_MAX]
        return {"mode": "elderly", "columns": [item(v) for v in chosen], "categories": []}
    cats = []
    for cat in CATEGORIES:
        cols = [item(v) for v in enabled if v.category == cat]
        if cols:
            cats.append({"name": cat, "columns": cols})
    return {"mode": "standard", "categories": cats}


async def update_column(
    session: AsyncSession,
    registry: Registry,
    *,
    slug: str,
    actor_id: str,
    enabled: bool | None = None,
    category: str | None = None,
    position: int | None = None,
) -> ColumnSetting:
    if slug not in registry.columns:
        raise NotFound("未找到该栏目", slug=slug)
    if category is not None and category not in CATEGORIES:
        raise ValidationFailed("栏目分类不存在", allowed=list(CATEGORIES))
    st = await session.get(ColumnSetting, slug)
    manifest = registry.columns[slug].manifest
    if st is None:
        st = ColumnSetting(slug=slug, position=manifest.order)
    before = {"enabled": st.enabled, "category": st.category, "position": st.position}
    if enabled is not None:
        st.enabled = enabled
    if category is not None:
        st.category = category
    if position is not None:
        st.position = position
    st.updated_at, st.updated_by = utcnow(), actor_id
    session.add(st)
    await session.flush()
    await audit.record(
        session,
        action="columns.changed",
        actor_id=actor_id,
        subject_type="column",
        subject_id=slug,
        data={
            "before": before,
            "after": {"enabled": st.enabled, "category": st.category, "position": st.position},
        },
    )
    return st


async def reorder(session: AsyncSession, registry: Registry, *, slugs: list[str], actor_id: str) -> None:
    unknown = [s for s in slugs if s not in registry.columns]
    if unknown or len(set(slugs)) != len(slugs):
        raise ValidationFailed("栏目列表有误（未知或重复的栏目）", unknown=unknown)
    for i, slug in enumerate(slugs):
        await update_column(session, registry, slug=slug, actor_id=actor_id, position=(i + 1) * 10)
