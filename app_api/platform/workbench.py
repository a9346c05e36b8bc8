"""The staff workbench: the shared foundation of the staff screens, built on the console's login.

Pages of every role (the loans column's bank officer screens, the admins' column list, ...) render
with :func:`render` from their own template folder plus this shared one (``base.html`` with the
navigation by role, ``403.html``). Access reuses the console: the ``wojia_console`` cookie, the
refresh-then-login redirect of an expired session (back to the page afterwards) and the ``csrf`` form
field of POSTs, all in :func:`app_api.platform.access.require_console_roles`. On top of it:

- :data:`WorkbenchStaff`: any staff member; a page then calls :func:`forbidden` for another role,
  which answers with the 403 page rather than data;
- :func:`once`: every POST form carries an idempotency key (``idem``, from :func:`new_idem_key`), so a
  double-submitted form does its action once and both submits land on the same page.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from app_api.core.errors import BadRequest
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.core.templates import LazyEnvironment
from app_api.platform.access import CSRF_FIELD, ROLE_NAMES, require_console_roles
from app_api.platform.accounts.principal import Principal

if TYPE_CHECKING:
    from jinja2 import Environment

SHARED_TEMPLATES = Path(__file__).parent / "workbench_templates"
WORKBENCH = "/api/v1/workbench/"
IDEM_FIELD = "idem"
IDEM_TTL_S = 24 * 3600
_IDEM = re.compile(r"[A-Za-z0-9_-]{16,64}")
STAFF_ROLES = ("agent", "reviewer", "finance", "bank_officer", "admin")

# The navigation: (role, label, path) of each role's screens; a member of staff sees their roles' own.
NAV: list[tuple[str, str, str]] = [
    ("reviewer", "审核办件", "/api/v1/columns/gov_services/workbench/"),
    ("reviewer", "效能督办", "/api/v1/columns/gov_services/workbench/supervision"),
    ("admin", "效能督办", "/api/v1/columns/gov_services/workbench/supervision"),
    ("admin", "事项目录", "/api/v1/columns/gov_services/workbench/catalogue"),
    ("bank_officer", "贷款审批", "/api/v1/columns/loans/workbench/"),
    ("agent", "代办服务", f"{WORKBENCH}agent/"),
    ("agent", "批量代办", f"{WORKBENCH}agent/batch"),
    ("admin", "栏目管理", f"{WORKBENCH}admin/columns"),
    ("admin", "第三方栏目", f"{WORKBENCH}admin/external-columns"),
    ("admin", "人员与角色", f"{WORKBENCH}admin/staff"),
    ("admin", "审计核验", f"{WORKBENCH}admin/audit"),
    ("finance", "财务对账", "/api/v1/payments/finance/console"),
]

WorkbenchStaff = Annotated[Principal, Depends(require_console_roles(*STAFF_ROLES))]


def environment(own: Path) -> LazyEnvironment:
    """A Jinja2 environment reading a package's own templates first, then the shared ones (built on
    the first page shown)."""

    def build() -> Environment:
        from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

        return Environment(
            loader=ChoiceLoader([FileSystemLoader(own), FileSystemLoader(SHARED_TEMPLATES)]),
            autoescape=select_autoescape(default=True),
        )

    return LazyEnvironment(build)


class FieldErrors(Exception):
    """Form input a screen could not read: Chinese messages by field name, shown beside each field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def new_idem_key() -> str:
    return secrets.token_urlsafe(18)


def nav(principal: Principal, current: str = "") -> list[dict[str, Any]]:
    """The member of staff's screens, once each; ``current`` marks the one the page belongs to (the
    longest path that prefixes it, so the queue is not current on its supervision page)."""
    seen: dict[str, str] = {}
    for role, label, path in NAV:
        if principal.has(role):
            seen.setdefault(path, label)
    best = max((p for p in seen if current.startswith(p)), key=len, default=None)
    return [{"label": label, "path": path, "current": path == best} for path, label in seen.items()]


def render(
    env: LazyEnvironment,
    name: str,
    request: Request,
    principal: Principal,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A workbench page: the template with the navigation, the CSRF value and a fresh idempotency key."""
    from app_api.platform.console import LOGOUT_PATH

    html = env.get_template(name).render(
        city=get_settings().city_name,
        nav=nav(principal, request.url.path),
        current=request.url.path,
        roles="、".join(ROLE_NAMES.get(r, r) for r in principal.roles),
        csrf=getattr(request.state, "csrf", ""),
        csrf_field=CSRF_FIELD,
        idem=new_idem_key(),
        idem_field=IDEM_FIELD,
        logout_path=LOGOUT_PATH,
        **context,
    )
    return HTMLResponse(
        html, status_code=status_code, headers={"cache-control": "no-store", "x-frame-options": "DENY"}
    )


_shared = environment(SHARED_TEMPLATES)


def forbidden(request: Request, principal: Principal, *roles: str, message: str = "") -> HTMLResponse | None:
    """The 403 page when ``principal`` holds none of ``roles`` (or ``message`` is given), else None."""
    if principal.has(*roles) and not message:
        return None
    text = message or f"此页面仅限以下角色：{'、'.join(ROLE_NAMES.get(r, r) for r in roles)}"
    return render(_shared, "403.html", request, principal, status_code=403, message=text)


async def once(principal: Principal, key: str, action: Callable[[], Awaitable[str]]) -> str:
    """Run a form's ``action`` once per idempotency key; returns the page to go to next.

    The first submit claims the key and runs the action (a refusal releases the key, so the form can
    be corrected and sent again); a repeat waits for the first one's page and returns it. The
    services behind the forms refuse a second move of the same state anyway (compare-and-set), so
    a key lost with Redis costs an error message, never a second action.
    """
    if not _IDEM.fullmatch(key):
        raise BadRequest("表单已失效，请刷新页面后重试")
    r = await get_redis()
    name = f"workbench:idem:{principal.id}:{key}"
    if await r.set(name, "", nx=True, ex=IDEM_TTL_S):
        try:
            target = await action()
        except BaseException:
            await r.delete(name)
            raise
        await r.set(name, target, ex=IDEM_TTL_S)
        return target
    for _ in range(100):
        stored = await r.get(name)
        if stored:
            return stored.decode() if isinstance(stored, bytes) else str(stored)
        if stored is None:
            break
        await asyncio.sleep(0.1)
    raise BadRequest("该表单正在处理或已提交，请刷新页面查看结果")


router = APIRouter(prefix="/workbench", tags=["workbench"])


def mount(screens: APIRouter) -> None:
    """Add a platform package's screens under ``/workbench`` (they ride on this router's mount)."""
    router.include_router(screens)


@router.get("/", response_class=HTMLResponse)
async def index(request: Request, who: WorkbenchStaff) -> HTMLResponse:
    """The workbench home: the screens of the staff member's roles."""
    return render(_shared, "index.html", request, who)


# The platform's own screens call mount() when their module is imported. Imported here, last, so
# that mounting the console's component brings them; a screen module imported first finds this one
# complete and mounts itself when it is done.
from app_api.platform import workbench_admin  # noqa: E402, F401
from app_api.platform.agents import workbench as agents_workbench  # noqa: E402, F401
