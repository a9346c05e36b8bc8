"""The admins' screen of third-party columns on the staff workbench: each registered column with its
state, enable or disable it (disabling revokes its tokens), and give it a new client secret when the
old one may have leaked. The same services as ``/api/v1/admin/external-columns``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import SessionDep, savepoint
from app_api.core.errors import AppError
from app_api.platform.accounts.principal import Principal
from app_api.platform.openplatform import service
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
PAGE = f"{WORKBENCH}admin/external-columns"
MESSAGES = {
    "enabled": "已启用，该栏目重新出现在居民首页；居民需重新授权登录",
    "disabled": "已停用，该栏目已从居民首页移除，其全部令牌已作废",
    "rotated": "密钥已重置。新密钥只在重置时显示一次；如未记下，请再次重置",
}
_env = environment(Path(__file__).parent / "templates")

router = APIRouter(prefix="/workbench/admin/external-columns", tags=["workbench"])


async def _page(
    request: Request,
    session: AsyncSession,
    who: Principal,
    *,
    error: str = "",
    done: str = "",
    secret: tuple[str, str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        _env,
        "external_columns.html",
        request,
        who,
        status_code=status_code,
        columns=await service.list_all(session),
        error=error,
        done=done,
        secret=secret,
        page=PAGE,
    )


@router.get("", response_class=HTMLResponse)
async def external_columns(
    request: Request, who: WorkbenchStaff, session: SessionDep, done: str = ""
) -> HTMLResponse:
    """Every third-party column in home-screen order, with its client id, state and actions."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return await _page(request, session, who, done=MESSAGES.get(done, ""))


@router.post("/{column_id}/enabled", response_class=HTMLResponse)
async def set_enabled(
    request: Request,
    column_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    enabled: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Enable (``enabled=1``) or disable (``enabled=0``) a column."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    if enabled not in {"0", "1"}:
        return await _page(request, session, who, error="请选择启用或停用", status_code=422)

    async def run() -> str:
        async with savepoint(session):
            await service.set_enabled(session, column_id=column_id, enabled=enabled == "1", actor_id=who.id)
        return f"{PAGE}?done={'enabled' if enabled == '1' else 'disabled'}"

    try:
        target = await once(who, idem, run)
    except AppError as e:
        return await _page(request, session, who, error=e.detail, status_code=e.status)
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


@router.post("/{column_id}/client-secret", response_class=HTMLResponse)
async def rotate_secret(
    request: Request,
    column_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """A new client secret, shown on this answer only (never in a URL, never stored in clear).

    A double-submitted form rotates once: the repeat lands on the list with the notice, and the
    secret stays on the first answer's page."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    issued: list[tuple[str, str, str]] = []

    async def run() -> str:
        async with savepoint(session):
            column, secret = await service.rotate_client_secret(session, column_id=column_id, actor_id=who.id)
        issued.append((column.name, column.client_id, secret))
        return f"{PAGE}?done=rotated"

    try:
        target = await once(who, idem, run)
    except AppError as e:
        return await _page(request, session, who, error=e.detail, status_code=e.status)
    if issued:
        return await _page(request, session, who, done=MESSAGES["rotated"], secret=issued[0])
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})
