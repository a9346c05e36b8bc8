"""The admins' column list on the staff workbench: enable, disable and order the columns of the
residents' home screen, through the same services as ``/api/v1/admin/columns``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app_api.core.db import SessionDep, on_commit, savepoint
from app_api.core.errors import AppError
from app_api.platform.accounts.principal import Principal
from app_api.platform.home.router import RegistryDep
from app_api.platform.home.service import Registry, reorder, update_column
from app_api.platform.workbench import (
    IDEM_FIELD,
    WORKBENCH,
    WorkbenchStaff,
    environment,
    forbidden,
    once,
    render,
)

ROLE = "admin"
PAGE = f"{WORKBENCH}admin/columns"
_env = environment(Path(__file__).parent / "templates")

router = APIRouter(prefix="/workbench/admin/columns", tags=["workbench"])


async def _page(
    request: Request,
    who: Principal,
    reg: Registry,
    *,
    error: str = "",
    done: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    views = await reg.views()
    return render(
        _env,
        "columns.html",
        request,
        who,
        status_code=status_code,
        columns=views,
        order=[v.slug for v in views],
        broken=reg.broken,
        error=error,
        done=done,
        page=PAGE,
    )


@router.get("", response_class=HTMLResponse)
async def columns(request: Request, who: WorkbenchStaff, reg: RegistryDep, done: str = "") -> HTMLResponse:
    """Every column in home-screen order, with its state and the enable/disable/move actions."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    messages = {
        "enabled": "已启用，居民首页已更新",
        "disabled": "已停用，居民首页已更新",
        "order": "顺序已保存，居民首页已更新",
    }
    return await _page(request, who, reg, done=messages.get(done, ""))


@router.post("/{slug}/enabled", response_class=HTMLResponse)
async def set_enabled(
    request: Request,
    slug: str,
    who: WorkbenchStaff,
    session: SessionDep,
    reg: RegistryDep,
    enabled: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Enable (``enabled=1``) or disable (``enabled=0``) a column."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    if enabled not in {"0", "1"}:
        return await _page(request, who, reg, error="请选择启用或停用", status_code=422)

    async def run() -> str:
        async with savepoint(session):
            await update_column(session, reg, slug=slug, actor_id=who.id, enabled=enabled == "1")
        await reg.invalidate()
        on_commit(session, reg.invalidate)
        return f"{PAGE}?done={'enabled' if enabled == '1' else 'disabled'}"

    try:
        target = await once(who, idem, run)
    except AppError as e:
        return await _page(request, who, reg, error=e.detail, status_code=e.status)
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


@router.post("/order", response_class=HTMLResponse)
async def set_order(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    reg: RegistryDep,
    slugs: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Save the order of the columns (``slugs``: comma-separated, first shown first)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied

    async def run() -> str:
        async with savepoint(session):
            await reorder(session, reg, slugs=[s for s in slugs.split(",") if s], actor_id=who.id)
        on_commit(session, reg.invalidate)
        return f"{PAGE}?done=order"

    try:
        target = await once(who, idem, run)
    except AppError as e:
        return await _page(request, who, reg, error=e.detail, status_code=e.status)
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})
