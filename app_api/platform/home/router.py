from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from app_api.core.cache import local_cache
from app_api.core.db import SessionDep, on_commit
from app_api.platform.access import Admin, OptionalAccount, optional_principal
from app_api.platform.accounts.principal import Principal
from app_api.platform.home.service import ColumnView, Registry, home_screen, reorder, update_column

router = APIRouter(tags=["home"])
admin_router = APIRouter(tags=["admin"])


async def registry(request: Request) -> Registry:
    # async: a plain function dependency is run in the thread pool, a hand-off on every request.
    reg: Registry = request.app.state.columns
    return reg


RegistryDep = Annotated[Registry, Depends(registry)]


_home_local = local_cache("columns", ttl_s=30.0)


async def home_body(reg: Registry, principal: Principal | None) -> bytes:
    level = principal.identity_level if principal else None
    elderly = bool(principal and principal.elderly_mode)
    # The screen depends only on the column settings, the level and the mode: serve it from memory.
    key = f"home|{level}|{elderly}"
    body = _home_local.get(key)
    if body is None:
        body = json.dumps(
            home_screen(await reg.home_views(), level=level, elderly=elderly), ensure_ascii=False
        ).encode()
        _home_local.set(key, body)
    return body


@router.get("/home", response_class=Response, responses={200: {"content": {"application/json": {}}}})
async def home(principal: OptionalAccount, reg: RegistryDep) -> Response:
    """The home screen: categories with their enabled columns and whether this resident may use each."""
    return Response(await home_body(reg, principal), media_type="application/json")


async def home_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """``home`` as a plain ASGI handler, for ``app_api.wiring.route_index`` to call without FastAPI's
    dependency resolution (a third of the route's CPU): its dependencies are plain (the optional
    bearer token, the registry), so this does what they do, with the same checks and errors, and
    answers what ``Response(body, media_type="application/json")`` answers."""
    principal = await optional_principal(scope)
    body = await home_body(scope["app"].state.columns, principal)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


home.__wojia_asgi__ = home_asgi  # type: ignore[attr-defined]


class ColumnPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = None
    category: str | None = None
    position: int | None = Field(default=None, ge=0, le=10000)


class ColumnOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slugs: list[str] = Field(min_length=1)


class ColumnsOut(BaseModel):
    columns: list[ColumnView]
    broken: dict[str, str]


class ColumnOrderOut(BaseModel):
    order: list[str]


class ColumnSettingOut(BaseModel):
    slug: str
    enabled: bool
    category: str | None
    position: int


@admin_router.get("/admin/columns")
async def list_columns(_: Admin, reg: RegistryDep) -> ColumnsOut:
    """All discovered columns with their settings, and the columns that failed to load."""
    return ColumnsOut(columns=await reg.views(), broken=reg.broken)


@admin_router.patch("/admin/columns/{slug}")
async def patch_column(
    slug: str, body: ColumnPatch, admin: Admin, session: SessionDep, reg: RegistryDep
) -> ColumnSettingOut:
    """Enable, disable, move or recategorise a column."""
    st = await update_column(
        session, reg, slug=slug, actor_id=admin.id, **body.model_dump(exclude_unset=True)
    )
    await reg.invalidate()
    on_commit(session, reg.invalidate)
    return ColumnSettingOut(slug=st.slug, enabled=st.enabled, category=st.category, position=st.position)


@admin_router.put("/admin/columns/order")
async def put_order(body: ColumnOrder, admin: Admin, session: SessionDep, reg: RegistryDep) -> ColumnOrderOut:
    """Set the order of columns (the listed ones first, in this order)."""
    await reorder(session, reg, slugs=body.slugs, actor_id=admin.id)
    on_commit(session, reg.invalidate)
    return ColumnOrderOut(order=body.slugs)


def column_gate(slug: str, open_endpoints: set[Any], level: int) -> Any:
    """Router-level dependency for a column: refuse when disabled; enforce the manifest's level.

    Routes that declare themselves open (``public`` or ``OptionalAccount``) are exempt from the
    level check; for the others a logged-in caller below the level gets ``identity.level_required``.
    """
    from app_api.core.errors import IdentityLevelRequired
    from app_api.platform.home.service import ColumnDisabled

    async def gate(request: Request, principal: OptionalAccount, reg: RegistryDep) -> None:
        view = await reg.view(slug)
        if not view.enabled:
            raise ColumnDisabled(slug=slug)
        if request.scope.get("endpoint") in open_endpoints:
            return
        if principal is not None and principal.identity_level < level:
            raise IdentityLevelRequired(level, principal.identity_level)

    gate.__wojia_gate__ = True  # type: ignore[attr-defined]
    return gate
