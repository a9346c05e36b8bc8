"""The admins' screens of the staff workbench: staff accounts and roles, and the audit-chain check.

Staff accounts are created with :func:`app_api.platform.accounts.service.create_staff` (the API's and
the CLI's way), with the department, institution or station each role works in. Changing roles and
disabling an account write the same ``account.*`` audit entries and drop the cached principal, so the
change holds from the account's next request. An admin cannot take their own admin role away or
disable themselves (the city would be left without anyone to undo it).

The audit page runs :func:`app_api.platform.audit.service.verify_chain` and lists recent entries
through :func:`app_api.platform.audit.queries.entries`, without their data (which may name people).
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import mask_phone
from app_api.core.db import SessionDep, savepoint
from app_api.core.errors import AppError
from app_api.core.paging import BadCursor
from app_api.platform import audit
from app_api.platform.access import ROLE_NAMES
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal, invalidate
from app_api.platform.agents import stations as directory
from app_api.platform.agents.errors import StationNotFound
from app_api.platform.audit import queries as audit_queries
from app_api.platform.audit.service import verify_chain
from app_api.platform.workbench import (
    IDEM_FIELD,
    SHARED_TEMPLATES,
    STAFF_ROLES,
    WORKBENCH,
    FieldErrors,
    WorkbenchStaff,
    environment,
    forbidden,
    mount,
    once,
    render,
)

ROLE = "admin"
STAFF_PAGE = f"{WORKBENCH}admin/staff"
AUDIT_PAGE = f"{WORKBENCH}admin/audit"
LIST_LIMIT = 200
AUDIT_PAGE_SIZE = 50
_PHONE = re.compile(r"1[3-9][0-9]{9}")
_DONE = {
    "created": "工作人员账号已创建",
    "roles": "角色已保存，下次操作起生效",
    "disabled": "账号已停用，该人员已无法使用工作台和接口",
    "enabled": "账号已重新启用",
}

_env = environment(SHARED_TEMPLATES / "admin")
_env.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if t else ""
_env.globals["role_names"] = ROLE_NAMES
_env.globals["staff_roles"] = [(r, ROLE_NAMES[r]) for r in STAFF_ROLES]

router = APIRouter(prefix="/admin", tags=["workbench"])


# -- staff accounts ----------------------------------------------------------------------------


def _has_role(role: str) -> sa.ColumnElement[bool]:
    # ``roles`` is a JSON list; its text holds each role quoted, on SQLite and PostgreSQL alike.
    return sa.cast(col(Account.roles), sa.String).like(f'%"{role}"%')


async def staff_accounts(session: AsyncSession, *, phone: str = "", role: str = "") -> list[Account]:
    """Staff accounts (any staff role), newest first; one phone number or one role when asked."""
    q = select(Account)
    if role in STAFF_ROLES:
        q = q.where(_has_role(role))
    else:
        q = q.where(sa.or_(*(_has_role(r) for r in STAFF_ROLES)))
    if phone:
        q = q.where(Account.phone_hash == accounts.phone_hash(phone))
    q = q.order_by(col(Account.created_at).desc(), col(Account.id)).limit(LIST_LIMIT)
    return list((await session.exec(q)).all())


def _view(a: Account) -> dict[str, Any]:
    return {
        "id": a.id,
        "phone": mask_phone(a.phone) if a.phone else "",
        "roles": [r for r in a.roles if r in STAFF_ROLES],
        "role_names": "、".join(ROLE_NAMES.get(r, r) for r in a.roles if r in STAFF_ROLES),
        "department": a.department or "",
        "institution_id": a.institution_id or "",
        "station_id": a.station_id or "",
        "active": a.is_active,
        "created_at": a.created_at,
        "last_login_at": a.last_login_at,
    }


async def _station_options(session: AsyncSession) -> list[tuple[str, str]]:
    return [(s.id, f"{s.name}（{s.city}）") for s in await directory.list_stations(session)]


async def _placement(session: AsyncSession, form: dict[str, Any], errors: dict[str, str]) -> dict[str, Any]:
    """The roles chosen and where each works (department, institution, station), checked."""
    roles = sorted({r for r in form["roles"] if r in STAFF_ROLES})
    if not roles or len(roles) != len(set(form["roles"])):
        errors["roles"] = "请至少选择一个工作人员角色"
    department = form["department"].strip()
    institution_id = form["institution_id"].strip()
    station_id = form["station_id"].strip()
    if len(department) > 64:
        errors["department"] = "部门名称不超过64个字"
    elif "reviewer" in roles and not department:
        errors["department"] = "审核人员须填写所属部门"
    if len(institution_id) > 64:
        errors["institution_id"] = "机构编号不超过64个字符"
    elif "bank_officer" in roles and not institution_id:
        errors["institution_id"] = "金融机构人员须填写所属机构编号"
    if "agent" in roles and not station_id:
        errors["station_id"] = "代办员须选择所在代办点"
    elif station_id:
        try:
            await directory.get_station(session, station_id)
        except StationNotFound:
            errors["station_id"] = "代办点不存在，请重新选择"
    return {
        "roles": roles,
        "department": department or None,
        "institution_id": institution_id or None,
        "station_id": station_id or None,
    }


async def change_roles(
    session: AsyncSession, *, account: Account, actor: Principal, placement: dict[str, Any]
) -> Account:
    """Set an account's staff roles and where it works; its other roles (resident) stay."""
    if account.id == actor.id and ROLE in account.roles and ROLE not in placement["roles"]:
        raise FieldErrors({"roles": "不能取消自己的管理员角色"})
    before = list(account.roles)
    keep = [r for r in account.roles if r not in STAFF_ROLES]
    account.roles = sorted({*keep, *placement["roles"]})
    account.department = placement["department"]
    account.institution_id = placement["institution_id"]
    account.station_id = placement["station_id"]
    session.add(account)
    await session.flush()
    await audit.record(
        session,
        action="account.roles_changed",
        actor_id=actor.id,
        subject_type="account",
        subject_id=account.id,
        data={"before": before, "after": account.roles},
    )
    await invalidate(account.id)
    return account


async def set_active(session: AsyncSession, *, account: Account, actor: Principal, active: bool) -> Account:
    """Disable (or enable again) a staff account; a disabled one is refused on its next request."""
    if account.id == actor.id and not active:
        raise FieldErrors({"_": "不能停用自己的账号"})
    if account.is_active == active:
        return account
    account.is_active = active
    session.add(account)
    await session.flush()
    await audit.record(
        session,
        action="account.enabled" if active else "account.disabled",
        actor_id=actor.id,
        subject_type="account",
        subject_id=account.id,
        data={},
    )
    await invalidate(account.id)
    return account


async def _staff_page(
    request: Request,
    who: Principal,
    session: AsyncSession,
    *,
    phone: str = "",
    role: str = "",
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    done: str = "",
) -> HTMLResponse:
    phone_error = "" if not phone or _PHONE.fullmatch(phone) else "请输入11位手机号"
    found = [] if phone_error else await staff_accounts(session, phone=phone, role=role)
    return render(
        _env,
        "staff.html",
        request,
        who,
        status_code=422 if errors else 200,
        staff=[_view(a) for a in found],
        limit=LIST_LIMIT,
        q_phone=phone,
        q_role=role,
        phone_error=phone_error,
        stations_options=await _station_options(session),
        errors=errors or {},
        values={"roles": [], **(values or {})},
        done=_DONE.get(done, ""),
        page=STAFF_PAGE,
        me=who.id,
    )


@router.get("/staff", response_class=HTMLResponse)
async def staff(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    phone: Annotated[str, Query(max_length=20)] = "",
    role: Annotated[str, Query(max_length=20)] = "",
    done: str = "",
) -> HTMLResponse:
    """Staff accounts with their roles and state, searchable by phone and role; the new-account form."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return await _staff_page(request, who, session, phone=phone.strip(), role=role, done=done)


@router.post("/staff", response_class=HTMLResponse)
async def create(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    phone: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    roles: Annotated[list[str] | None, Form()] = None,
    department: Annotated[str, Form()] = "",
    institution_id: Annotated[str, Form()] = "",
    station_id: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Create a staff account with its roles and where it works."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    form: dict[str, Any] = {
        "phone": phone.strip(),
        "roles": roles or [],
        "department": department,
        "institution_id": institution_id,
        "station_id": station_id,
    }

    async def run() -> str:
        errors: dict[str, str] = {}
        if not _PHONE.fullmatch(form["phone"]):
            errors["phone"] = "请输入11位手机号"
        if not 10 <= len(password) <= 200:
            errors["password"] = "初始密码至少10位"
        placement = await _placement(session, form, errors)
        if not errors.get("phone"):
            existing = await accounts.find_by_phone(session, form["phone"])
            if existing is not None and existing.is_staff:
                errors["phone"] = "该手机号已是工作人员账号，请在列表中修改其角色"
        if errors:
            raise FieldErrors(errors)
        async with savepoint(session):
            account = await accounts.create_staff(
                session, phone=form["phone"], password=password, actor_id=who.id, **placement
            )
        return f"{STAFF_PAGE}/{account.id}?done=created"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _staff_page(request, who, session, errors=e.errors, values=form)
    except AppError as e:
        return await _staff_page(request, who, session, errors={"_": e.detail}, values=form)
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


async def _account_page(
    request: Request,
    who: Principal,
    session: AsyncSession,
    account: Account,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    done: str = "",
) -> HTMLResponse:
    view = _view(account)
    return render(
        _env,
        "account.html",
        request,
        who,
        status_code=422 if errors else 200,
        account=view,
        stations_options=await _station_options(session),
        errors=errors or {},
        values=values or view,
        done=_DONE.get(done, ""),
        page=STAFF_PAGE,
        me=who.id,
    )


async def _staff_account(session: AsyncSession, account_id: str) -> Account | None:
    account = await session.get(Account, account_id)
    return account if account is not None and account.is_staff else None


def _not_found(request: Request, who: Principal) -> HTMLResponse:
    page = render(_env, "missing.html", request, who, status_code=404, page=STAFF_PAGE)
    return page


@router.get("/staff/{account_id}", response_class=HTMLResponse)
async def account_page(
    request: Request, account_id: str, who: WorkbenchStaff, session: SessionDep, done: str = ""
) -> HTMLResponse:
    """One staff account: its roles and placement, the role form and the disable button."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    account = await _staff_account(session, account_id)
    if account is None:
        return _not_found(request, who)
    return await _account_page(request, who, session, account, done=done)


@router.post("/staff/{account_id}/roles", response_class=HTMLResponse)
async def roles_form(
    request: Request,
    account_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    roles: Annotated[list[str] | None, Form()] = None,
    department: Annotated[str, Form()] = "",
    institution_id: Annotated[str, Form()] = "",
    station_id: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Change a staff account's roles (and department, institution, station)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    account = await _staff_account(session, account_id)
    if account is None:
        return _not_found(request, who)
    form: dict[str, Any] = {
        "roles": roles or [],
        "department": department,
        "institution_id": institution_id,
        "station_id": station_id,
    }

    async def run() -> str:
        errors: dict[str, str] = {}
        placement = await _placement(session, form, errors)
        if errors:
            raise FieldErrors(errors)
        async with savepoint(session):
            await change_roles(session, account=account, actor=who, placement=placement)
        return f"{STAFF_PAGE}/{account.id}?done=roles"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _account_page(request, who, session, account, errors=e.errors, values=form)
    except AppError as e:
        return await _account_page(request, who, session, account, errors={"_": e.detail}, values=form)
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


@router.post("/staff/{account_id}/active", response_class=HTMLResponse)
async def active_form(
    request: Request,
    account_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    active: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Disable (``active=0``) or enable again (``active=1``) a staff account."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    account = await _staff_account(session, account_id)
    if account is None:
        return _not_found(request, who)

    async def run() -> str:
        if active not in {"0", "1"}:
            raise FieldErrors({"_": "请选择停用或启用"})
        async with savepoint(session):
            await set_active(session, account=account, actor=who, active=active == "1")
        return f"{STAFF_PAGE}/{account.id}?done={'enabled' if active == '1' else 'disabled'}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _account_page(request, who, session, account, errors=e.errors)
    except AppError as e:
        return await _account_page(request, who, session, account, errors={"_": e.detail})
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


# -- the audit chain ---------------------------------------------------------------------------

_ACTION = re.compile(r"[a-z_][a-z0-9_.]{0,79}")
_SUBJECT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


async def _audit_page(
    request: Request,
    who: Principal,
    session: AsyncSession,
    *,
    action: str,
    subject_id: str,
    cursor: str | None,
    check: dict[str, Any] | None = None,
) -> HTMLResponse:
    errors: dict[str, str] = {}
    if action and not _ACTION.fullmatch(action):
        errors["action"] = "操作类型只含小写字母、数字、下划线和点，如 account.roles_changed"
    if subject_id and not _SUBJECT.fullmatch(subject_id):
        errors["subject_id"] = "对象编号只含字母、数字和 _ . : -"
    items: list[Any] = []
    more = ""
    if not errors:
        try:
            found = await audit_queries.entries(
                session,
                action=action or None,
                subject_id=subject_id or None,
                cursor=cursor,
                limit=AUDIT_PAGE_SIZE,
            )
        except BadCursor:
            errors["_"] = "分页参数无效，已回到第一页"
            found = await audit_queries.entries(
                session, action=action or None, subject_id=subject_id or None, limit=AUDIT_PAGE_SIZE
            )
        # The entries' data is left out: it may name people (amounts, fields, phone masks).
        items = [
            {k: getattr(e, k) for k in ("seq", "at", "action", "actor_id", "subject_type", "subject_id")}
            for e in found.items
        ]
        if found.next_cursor:
            q = {"action": action, "subject_id": subject_id, "cursor": found.next_cursor}
            more = f"{AUDIT_PAGE}?{urlencode(q)}"
    return render(
        _env,
        "audit.html",
        request,
        who,
        status_code=422 if errors else 200,
        items=items,
        more=more,
        errors=errors,
        values={"action": action, "subject_id": subject_id},
        check=check,
        page=AUDIT_PAGE,
    )


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    action: Annotated[str, Query(max_length=100)] = "",
    subject_id: Annotated[str, Query(max_length=100)] = "",
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> HTMLResponse:
    """Recent audit entries (without their data), searchable by action and subject; the chain check."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return await _audit_page(
        request, who, session, action=action.strip(), subject_id=subject_id.strip(), cursor=cursor or None
    )


@router.get("/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request, who: WorkbenchStaff, session: SessionDep) -> HTMLResponse:
    """Walk the whole hash chain and show whether it holds, or the first broken entry."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    report = await verify_chain(session)
    check = {
        "ok": report.ok,
        "checked": report.checked,
        "first_broken_seq": report.first_broken_seq,
        "reason": report.reason,
    }
    return await _audit_page(request, who, session, action="", subject_id="", cursor=None, check=check)


mount(router)
