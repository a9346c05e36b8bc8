"""The station agents' screens of the staff workbench (代办服务): find a resident, get a mandate, file
for them, upload scans, submit a batch, see the station's filings and record pickups.

Everything goes through the agents services the API uses (``mandates``, ``submissions``, ``filing``,
``actions``): the mandate checks, the catalogue capability, the per-agent lock and the client keys.
A form's idempotency key becomes the submission's client key, so a double-submitted filing or batch
files once (the second answer says 已提交过).
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import mask_id_number, mask_name, mask_phone
from app_api.core.db import SessionDep, lock_for_writing, savepoint
from app_api.core.errors import AppError
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.agents import actions, errors, filing, mandates, submissions
from app_api.platform.agents.models import SCOPES, AgentAction, Mandate, Submission
from app_api.platform.agents.schemas import SubmissionIn
from app_api.platform.agents.stations import agent_station
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.access_log import Actor
from app_api.platform.datahub.service import RecordNotFound, get_datahub
from app_api.platform.workbench import (
    IDEM_FIELD,
    WORKBENCH,
    FieldErrors,
    WorkbenchStaff,
    environment,
    forbidden,
    mount,
    once,
    render,
)

ROLE = "agent"
BASE = f"{WORKBENCH}agent"
FILINGS_SHOWN = 20
MAX_PAGE = 500
UPLOAD_MAX = 10 * 1024 * 1024
BATCH_FILE_MAX = 2 * 1024 * 1024
PICKED_UP = "result_picked_up"
_PHONE = re.compile(r"1[3-9][0-9]{9}")
_ITEM = re.compile(r"[A-Za-z0-9_.-]{1,40}")
# The batch file's columns (the first row names them; order does not matter).
BATCH_COLUMNS = {
    "手机号": "phone",
    "事项编码": "item_code",
    "户籍地址": "address",
    "结果代领": "pickup",
    "备注": "note",
}
STATUS_ROW = {"created": "已代办提交", "duplicate": "已提交过（未重复提交）", "failed": "未提交"}
_DONE = {
    "mandate": "授权已记录，可以为该居民代办",
    "filed": "已代为提交申请，居民已收到短信通知",
    "uploaded": "材料已上传",
    "pickup": "已登记居民领取办理结果",
}
FROM_REGISTRY = "已从城市人口信息调取，请与居民证件核对"

_env = environment(Path(__file__).parent / "workbench_templates")
_env.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if t else ""
_env.globals["scope_options"] = list(SCOPES.items())

router = APIRouter(prefix="/agent", tags=["workbench"])


def _redirect(target: str) -> RedirectResponse:
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


def _resident_view(a: Account) -> dict[str, Any]:
    number = a.id_number
    return {
        "id": a.id,
        "phone": mask_phone(a.phone),
        "name": mask_name(a.real_name) if a.real_name else "（未实名）",
        # What the filing fills from the resident's real-name record (on_behalf in the catalogue).
        "prefill": {
            "姓名": mask_name(a.real_name) if a.real_name else "",
            "身份证号码": mask_id_number(number) if number else "",
            "出生日期": f"{number[6:10]}-{number[10:12]}-{number[12:14]}" if number else "",
            "性别": ("男" if int(number[16]) % 2 else "女") if number else "",
        },
        "has_id": bool(number),
    }


async def _mandates_of(session: AsyncSession, agent: Principal, resident_id: str) -> list[dict[str, Any]]:
    q = (
        select(Mandate)
        .where(Mandate.agent_id == agent.id, Mandate.resident_id == resident_id)
        .order_by(col(Mandate.created_at).desc())
        .limit(20)
    )
    out = []
    for m in (await session.exec(q)).all():
        state = await mandates.mandate_state(session, m)
        out.append(
            {
                "id": m.id,
                "scopes": m.scopes,
                "scope_labels": "、".join(SCOPES.get(s, s) for s in m.scopes),
                "item_list": "、".join(m.items) or "不限",
                "expires_at": m.expires_at,
                "state": state,
                "state_name": {"valid": "有效", "expired": "已过期", "withdrawn": "已撤回"}.get(state, state),
            }
        )
    return out


# What a filing answers is ``FiledApplication`` (id, number, status code); a fresh filing is in one
# of these two states. Later states come from the catalogue's ``my_applications`` with their names.
_FILED_STATES = {"submitted": "已提交", "awaiting_payment": "待缴费"}


def _at_filing(app: dict[str, Any]) -> str:
    status = str(app.get("status") or "")
    return str(app.get("status_name") or _FILED_STATES.get(status, status))


async def _tracked(session: AsyncSession, agent: Principal, station_id: str, residents: set[str]) -> set[str]:
    """The residents whose valid mandate lets this agent see their applications ("track"): the
    mandates and their consents read in two queries, judged by the mandates service's own rules."""
    if not residents:
        return set()
    q = select(Mandate).where(
        Mandate.agent_id == agent.id,
        Mandate.station_id == station_id,
        col(Mandate.resident_id).in_(residents),
    )
    found = list((await session.exec(q)).all())
    ids = [m.consent_id for m in found]
    # Held while judging: in the session's identity map (weakly referenced), mandate_state finds
    # each consent without a query.
    consents = (
        list((await session.exec(select(Consent).where(col(Consent.id).in_(ids)))).all()) if ids else []
    )
    out = set()
    for m in found:
        tracking = m.resident_id not in out and mandates.covers(m, "track", None)
        if tracking and await mandates.mandate_state(session, m) == "valid":
            out.add(m.resident_id)
    del consents
    return out


async def _filings(
    session: AsyncSession, agent: Principal, station_id: str, *, resident_id: str | None = None, page: int = 1
) -> list[dict[str, Any]]:
    """The station's newest filings with their state now (where a "track" mandate lets the agent
    see it; else the state at filing) and whether a result posted to the station was picked up."""
    q = select(Submission).where(Submission.station_id == station_id)
    if resident_id:
        q = q.where(Submission.resident_id == resident_id)
    rows = list(
        (
            await session.exec(
                q.order_by(col(Submission.created_at).desc(), col(Submission.id))
                .offset((page - 1) * FILINGS_SHOWN)
                .limit(FILINGS_SHOWN)
            )
        ).all()
    )
    picked = set()
    if rows:
        pq = select(AgentAction.subject_id).where(
            AgentAction.station_id == station_id,
            AgentAction.action == PICKED_UP,
            col(AgentAction.subject_id).in_([r.id for r in rows]),
        )
        picked = set((await session.exec(pq)).all())
    residents = (
        {
            a.id: a
            for a in (
                await session.exec(select(Account).where(col(Account.id).in_({r.resident_id for r in rows})))
            ).all()
        }
        if rows
        else {}
    )
    now: dict[str, dict[str, Any]] = {}
    tracked = await _tracked(session, agent, station_id, {r.resident_id for r in rows})
    if tracked:
        # One call for every tracked resident (their newest applications, as ``my_applications``).
        cat = filing.catalogue()
        if cat is None:
            raise errors.FilingUnavailable("办理进度查询暂未开通")
        found = await cat.applications_of_residents(sorted(tracked), limit=FILINGS_SHOWN, session=session)
        for listed in found.values():
            for a in listed:
                now[str(a.get("id"))] = a
    out = []
    for r in rows:
        app = r.result or {}
        current = now.get(str(app.get("id")))
        resident = residents.get(r.resident_id)
        out.append(
            {
                "id": r.id,
                "resident_id": r.resident_id,
                "resident": (mask_name(resident.real_name) if resident and resident.real_name else "")
                + (f"（{mask_phone(resident.phone)}）" if resident and resident.phone else ""),
                "item": app.get("item_name") or r.item_code,
                "number": app.get("number") or "",
                "application_id": app.get("id") or "",
                "state": (current or {}).get("status_name") or _at_filing(app),
                "state_now": current is not None,
                "pickup": r.pickup,
                "picked_up": r.id in picked,
                "at": r.created_at,
            }
        )
    return out


async def _home(
    request: Request,
    who: Principal,
    session: AsyncSession,
    *,
    errors_: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    new_phone: str = "",
    done: str = "",
    status_code: int | None = None,
    page: int = 1,
) -> HTMLResponse:
    station = await agent_station(session, who)
    filings = await _filings(session, who, station.id, page=page)
    return render(
        _env,
        "agent_home.html",
        request,
        who,
        status_code=status_code or (422 if errors_ else 200),
        station=station,
        filings=filings,
        page=page,
        more=f"{BASE}/?page={page + 1}" if len(filings) == FILINGS_SHOWN and page < MAX_PAGE else "",
        errors=errors_ or {},
        values={"scopes": ["apply", "upload", "track", "pickup"], "days": "90", **(values or {})},
        new_phone=new_phone,
        new_phone_masked=mask_phone(new_phone) if new_phone else "",
        filing_available=filing.catalogue() is not None,
        done=_DONE.get(done, ""),
        base=BASE,
    )


def _refused(request: Request, who: Principal, e: AppError) -> HTMLResponse:
    return forbidden(request, who, ROLE, message=e.detail) or HTMLResponse(status_code=403)


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    done: str = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> HTMLResponse:
    """The station's page: find a resident by phone, the station's filings and their states."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    try:
        return await _home(request, who, session, done=done, page=page)
    except errors.NotAssigned as e:
        return _refused(request, who, e)


@router.post("/find", response_class=HTMLResponse)
async def find(
    request: Request, who: WorkbenchStaff, session: SessionDep, phone: Annotated[str, Form()] = ""
) -> Response:
    """Look a resident up by phone (sent in a form, so the number stays out of URLs and logs)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    phone = phone.strip()
    try:
        if not _PHONE.fullmatch(phone):
            return await _home(
                request,
                who,
                session,
                errors_={"phone": "请输入居民本人的11位手机号"},
                values={"phone": phone},
            )
        account = await accounts.find_by_phone(session, phone)
        if account is not None and account.is_staff:
            return await _home(
                request,
                who,
                session,
                errors_={"phone": errors.ResidentIsStaff().detail},
                values={"phone": phone},
            )
        if account is None or not account.is_active:
            # No account yet: the resident's SMS confirmation of a mandate opens one.
            return await _home(request, who, session, new_phone=phone, values={"phone": phone})
    except errors.NotAssigned as e:
        return _refused(request, who, e)
    return _redirect(f"{BASE}/residents/{account.id}")


async def _resident(session: AsyncSession, resident_id: str) -> Account | None:
    account = await session.get(Account, resident_id)
    return account if account is not None and account.is_active and not account.is_staff else None


async def _resident_page(
    request: Request,
    who: Principal,
    session: AsyncSession,
    resident: Account,
    *,
    errors_: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    done: str = "",
    extra: str = "",
    address_source: str = "",
) -> HTMLResponse:
    station = await agent_station(session, who)
    found = await _mandates_of(session, who, resident.id)
    valid = [m for m in found if m["state"] == "valid"]
    return render(
        _env,
        "agent_resident.html",
        request,
        who,
        status_code=422 if errors_ else 200,
        station=station,
        resident=_resident_view(resident),
        mandates=found,
        can_apply=any("apply" in m["scopes"] for m in valid),
        can_upload=any("upload" in m["scopes"] for m in valid),
        can_pickup=any("pickup" in m["scopes"] for m in valid),
        filings=await _filings(session, who, station.id, resident_id=resident.id),
        errors=errors_ or {},
        values={"scopes": ["apply", "upload", "track", "pickup"], "days": "90", **(values or {})},
        filing_available=filing.catalogue() is not None,
        done=_DONE.get(done, ""),
        extra=extra,
        address_source=address_source,
        base=BASE,
    )


@router.get("/residents/{resident_id}", response_class=HTMLResponse)
async def resident_page(
    request: Request,
    resident_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    done: str = "",
    number: str = "",
) -> HTMLResponse:
    """A resident: this agent's mandates from them, the filing and upload forms, their filings here."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    resident = await _resident(session, resident_id)
    if resident is None:
        return forbidden(request, who, ROLE, message="未找到该居民账户") or HTMLResponse(status_code=403)
    try:
        return await _resident_page(request, who, session, resident, done=done, extra=number[:40])
    except errors.NotAssigned as e:
        return _refused(request, who, e)


def _mandate_form(scopes: list[str], days: str, items: str) -> dict[str, Any]:
    problems: dict[str, str] = {}
    chosen = [s for s in scopes if s in SCOPES]
    if not chosen or len(chosen) != len(scopes):
        problems["scopes"] = "请至少选择一项授权范围"
    if not days.strip().isdigit() or not 1 <= int(days.strip()) <= 365:
        problems["days"] = "授权期限为1至365天"
    codes = [c for c in re.split(r"[\s,，、]+", items.strip()) if c]
    if len(codes) > 50 or any(not _ITEM.fullmatch(c) for c in codes):
        problems["item_codes"] = "事项编码只含字母、数字和 _ . -，多个用逗号分隔，最多50个"
    if problems:
        raise FieldErrors(problems)
    return {"scopes": chosen, "days": int(days.strip()), "items": codes}


@router.post("/mandates", response_class=HTMLResponse)
async def request_mandate(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    phone: Annotated[str, Form()] = "",
    resident_id: Annotated[str, Form()] = "",
    scopes: Annotated[list[str] | None, Form()] = None,
    days: Annotated[str, Form()] = "90",
    item_codes: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Send the resident the SMS code naming the station, the scope and the period."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    resident = await _resident(session, resident_id) if resident_id else None
    number = resident.phone if resident is not None else phone.strip()
    values = {"scopes": scopes or [], "days": days, "item_codes": item_codes, "phone": phone}

    async def run() -> str:
        if not _PHONE.fullmatch(number):
            raise FieldErrors({"phone": "请输入居民本人的11位手机号"})
        asked = _mandate_form(scopes or [], days, item_codes)
        sent = await mandates.request_sms_mandate(session, agent=who, phone=number, **asked)
        return f"{BASE}/mandates/{sent.request_id}?to={resident.id if resident else ''}"

    try:
        return _redirect(await once(who, idem, run))
    except (FieldErrors, AppError) as e:
        problems = e.errors if isinstance(e, FieldErrors) else {"_": e.detail}
        try:
            if resident is not None:
                return await _resident_page(request, who, session, resident, errors_=problems, values=values)
            return await _home(request, who, session, errors_=problems, values=values, new_phone=number)
        except errors.NotAssigned as denied_:
            return _refused(request, who, denied_)


@router.get("/mandates/{request_id}", response_class=HTMLResponse)
async def mandate_code(
    request: Request, request_id: str, who: WorkbenchStaff, session: SessionDep, to: str = ""
) -> HTMLResponse:
    """The form where the agent types the code the resident reads out from their own phone."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return render(
        _env,
        "agent_code.html",
        request,
        who,
        request_id=request_id[:64],
        to=to[:32],
        errors={},
        values={},
        base=BASE,
    )


@router.post("/mandates/{request_id}", response_class=HTMLResponse)
async def confirm_mandate(
    request: Request,
    request_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    code: Annotated[str, Form()] = "",
    to: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Record the mandate with the resident's code, then on to the resident's page."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied

    async def run() -> str:
        if not re.fullmatch(r"[0-9]{6}", code.strip()):
            raise FieldErrors({"code": "请输入居民手机收到的6位验证码"})
        async with savepoint(session):
            m = await mandates.confirm_sms_mandate(
                session, agent=who, request_id=request_id, code=code.strip()
            )
        return f"{BASE}/residents/{m.resident_id}?done=mandate"

    try:
        return _redirect(await once(who, idem, run))
    except (FieldErrors, AppError) as e:
        problems = e.errors if isinstance(e, FieldErrors) else {"code": e.detail}
        return render(
            _env,
            "agent_code.html",
            request,
            who,
            status_code=422,
            request_id=request_id[:64],
            to=to[:32],
            errors=problems,
            values={"code": code},
            base=BASE,
        )


@router.post("/residents/{resident_id}/prefill", response_class=HTMLResponse)
async def prefill(
    request: Request, resident_id: str, who: WorkbenchStaff, session: SessionDep
) -> HTMLResponse:
    """Fill the filing form's address from the city's population record, read under the mandate.

    The mandate is the resident's recorded consent (purpose ``agents.mandate``) to apply for them:
    the read is checked against it by the data-center gateway and lands in the resident's access
    log with the agent, the station and the mandate."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    resident = await _resident(session, resident_id)
    if resident is None:
        return forbidden(request, who, ROLE, message="未找到该居民账户") or HTMLResponse(status_code=403)
    try:
        try:
            m, station = await mandates.require_mandate(
                session, agent=who, resident_id=resident.id, scope="apply"
            )
            number = resident.id_number
            if not number:
                raise FieldErrors({"address": "该居民尚未实名登记身份证号，无法调取，请核对证件后填写"})
            record = await get_datahub().person(
                session,
                id_number=number,
                accessor_id=who.id,
                purpose=mandates.MANDATE_PURPOSE,
                consent_id=m.consent_id,
                subject_account_id=resident.id,
                scopes=["apply"],
                actor=Actor.agent(who.id, station.id, m.id),
            )
        except RecordNotFound:
            raise FieldErrors({"address": "城市人口信息中未找到该居民，请核对证件后填写"}) from None
        except FieldErrors:
            raise
        except AppError as e:
            raise FieldErrors({"_": e.detail}) from e
    except FieldErrors as e:
        try:
            return await _resident_page(request, who, session, resident, errors_=e.errors)
        except errors.NotAssigned as denied_:
            return _refused(request, who, denied_)
    return await _resident_page(
        request, who, session, resident, values={"address": record.address}, address_source=FROM_REGISTRY
    )


@router.post("/residents/{resident_id}/file", response_class=HTMLResponse)
async def file_application(
    request: Request,
    resident_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    item_code: Annotated[str, Form()] = "",
    address: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    pickup: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """File an application for the resident under their mandate (the form's key is the client key)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    resident = await _resident(session, resident_id)
    if resident is None:
        return forbidden(request, who, ROLE, message="未找到该居民账户") or HTMLResponse(status_code=403)
    values = {"item_code": item_code, "address": address, "note": note, "pickup": pickup}

    async def run() -> str:
        item = _submission(idem, resident.id, item_code, address, note, pickup == "1")
        await submissions.lock_for_writing(session, who.id)
        async with savepoint(session):
            out = await submissions.submit(session, agent=who, item=item)
        return f"{BASE}/residents/{resident.id}?done=filed&number={out.application.get('number') or ''}"

    try:
        return _redirect(await once(who, idem, run))
    except (FieldErrors, AppError) as e:
        problems = e.errors if isinstance(e, FieldErrors) else _filing_error(e)
        try:
            return await _resident_page(request, who, session, resident, errors_=problems, values=values)
        except errors.NotAssigned as denied_:
            return _refused(request, who, denied_)


def _submission(
    key: str, resident_id: str, item_code: str, address: str, note: str, pickup: bool
) -> SubmissionIn:
    problems: dict[str, str] = {}
    if not _ITEM.fullmatch(item_code.strip()):
        problems["item_code"] = "请输入事项编码（字母、数字和 _ . -）"
    if not 4 <= len(address.strip()) <= 200:
        problems["address"] = "请核对居民证件后填写户籍地址（4至200字）"
    if len(note) > 300:
        problems["note"] = "备注不超过300字"
    if problems:
        raise FieldErrors(problems)
    form = {"person.address": address.strip()} | ({"note": note.strip()} if note.strip() else {})
    try:
        return SubmissionIn(
            client_key=f"wb-{key}"[:64],
            resident_id=resident_id,
            item_code=item_code.strip(),
            form=form,
            pickup=pickup,
        )
    except ValidationError as e:
        raise FieldErrors({"_": "表单已失效，请刷新页面后重试"}) from e


def _filing_error(e: AppError) -> dict[str, str]:
    """A refusal of the filing next to the field it is about (else at the top)."""
    if e.code in {"gov_services.item_not_found", "agents.out_of_scope"} and "item" in e.detail:
        return {"item_code": e.detail}
    if e.code == "gov_services.item_not_found":
        return {"item_code": e.detail}
    if e.code == "agents.out_of_scope" and e.extra.get("scope") == "pickup":
        return {"pickup": e.detail}
    return {"_": e.detail}


@router.post("/residents/{resident_id}/upload", response_class=HTMLResponse)
async def upload(
    request: Request,
    resident_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    application_id: Annotated[str, Form()] = "",
    material: Annotated[str, Form()] = "",
    file: UploadFile | None = None,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Upload a scan taken at the station for one of the resident's applications."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    resident = await _resident(session, resident_id)
    if resident is None:
        return forbidden(request, who, ROLE, message="未找到该居民账户") or HTMLResponse(status_code=403)
    values = {"application_id": application_id, "material": material}

    async def run() -> str:
        problems: dict[str, str] = {}
        if not application_id.strip():
            problems["application_id"] = "请选择申请"
        if not 1 <= len(material.strip()) <= 100:
            problems["material"] = "请填写材料名称（与办事指南一致）"
        data = await file.read(UPLOAD_MAX + 1) if file is not None and file.filename else b""
        if not data:
            problems["file"] = "请选择扫描件（图片或PDF）"
        elif len(data) > UPLOAD_MAX:
            problems["file"] = "文件不超过10MB"
        if problems:
            raise FieldErrors(problems)
        assert file is not None
        # Reads then writes: on SQLite take the write lock first, so a concurrent writer (a job
        # delivering the supplement's notice) makes this wait instead of failing the upgrade.
        await lock_for_writing(session)
        m, station = await mandates.require_mandate(
            session, agent=who, resident_id=resident.id, scope="upload"
        )
        async with savepoint(session):
            await filing.upload_on_behalf(
                session,
                resident_id=resident.id,
                agent_id=who.id,
                station_id=station.id,
                mandate_id=m.id,
                application_id=application_id.strip(),
                material=material.strip(),
                filename=file.filename or "upload",
                content_type=file.content_type,
                data=data,
            )
            await actions.record_action(
                session,
                agent_id=who.id,
                station_id=station.id,
                resident_id=resident.id,
                mandate=m,
                action="material_uploaded",
                subject_id=application_id.strip(),
                data={"material": material.strip(), "size": len(data)},
            )
        return f"{BASE}/residents/{resident.id}?done=uploaded"

    try:
        return _redirect(await once(who, idem, run))
    except (FieldErrors, AppError) as e:
        problems = e.errors if isinstance(e, FieldErrors) else {"file": e.detail}
        try:
            return await _resident_page(request, who, session, resident, errors_=problems, values=values)
        except errors.NotAssigned as denied_:
            return _refused(request, who, denied_)


@router.post("/pickups/{submission_id}", response_class=HTMLResponse)
async def record_pickup(
    request: Request,
    submission_id: str,
    who: WorkbenchStaff,
    session: SessionDep,
    back: Annotated[str, Form()] = "",
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Record that the resident collected at the station a result posted there."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    target = (
        f"{BASE}/residents/{back}?done=pickup"
        if back and re.fullmatch(r"[A-Za-z0-9]{1,32}", back)
        else f"{BASE}/?done=pickup"
    )

    async def run() -> str:
        station = await agent_station(session, who)
        sub = await session.get(Submission, submission_id)
        if sub is None or sub.station_id != station.id or not sub.pickup:
            raise FieldErrors({"_": "该办件不是寄送至本代办点代领的办件"})
        q = select(AgentAction).where(AgentAction.action == PICKED_UP, AgentAction.subject_id == sub.id)
        if (await session.exec(q)).first() is None:
            mandate = await session.get(Mandate, sub.mandate_id)
            await actions.record_action(
                session,
                agent_id=who.id,
                station_id=station.id,
                resident_id=sub.resident_id,
                mandate=mandate,
                action=PICKED_UP,
                subject_id=sub.id,
                data={"application_number": str((sub.result or {}).get("number") or "")},
            )
        return target

    try:
        return _redirect(await once(who, idem, run))
    except (FieldErrors, AppError) as e:
        problems = e.errors if isinstance(e, FieldErrors) else {"_": e.detail}
        try:
            return await _home(request, who, session, errors_=problems)
        except errors.NotAssigned as denied_:
            return _refused(request, who, denied_)


# -- batches -----------------------------------------------------------------------------------


def read_batch(name: str, data: bytes) -> list[dict[str, str]]:
    """The rows of a batch file (CSV in UTF-8 or GB18030, or XLSX), by the columns' Chinese names."""
    if name.lower().endswith(".xlsx"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as e:  # openpyxl raises many kinds on a file that is not a workbook
            raise FieldErrors({"file": "无法读取该 Excel 文件，请另存为 .xlsx 后重试"}) from e
        sheet = book.worksheets[0]
        table = [
            ["" if v is None else str(v).strip() for v in row] for row in sheet.iter_rows(values_only=True)
        ]
    elif name.lower().endswith(".csv"):
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise FieldErrors({"file": "文件编码无法识别，请保存为 UTF-8 的 CSV"})
        table = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]
    else:
        raise FieldErrors({"file": "仅支持 .csv 或 .xlsx 文件"})
    table = [row for row in table if any(row)]
    if not table:
        raise FieldErrors({"file": "文件是空的"})
    header = [BATCH_COLUMNS.get(h.strip()) for h in table[0]]
    missing = [
        k for k, v in BATCH_COLUMNS.items() if v in {"phone", "item_code", "address"} and v not in header
    ]
    if missing:
        raise FieldErrors({"file": f"第1行须为列名，缺少：{'、'.join(missing)}"})
    rows = [{h: (row[i] if i < len(row) else "") for i, h in enumerate(header) if h} for row in table[1:]]
    if not rows:
        raise FieldErrors({"file": "文件中没有数据行"})
    if len(rows) > submissions.BATCH_MAX:
        raise FieldErrors({"file": f"每批最多{submissions.BATCH_MAX}行"})
    return rows


def _batch_page(request: Request, who: Principal, **context: Any) -> HTMLResponse:
    context.setdefault("errors", {})
    context.setdefault("values", {})
    status = 422 if context["errors"] else 200
    return render(
        _env,
        "agent_batch.html",
        request,
        who,
        status_code=status,
        columns=list(BATCH_COLUMNS),
        base=BASE,
        **context,
    )


@router.get("/batch", response_class=HTMLResponse)
async def batch_form(request: Request, who: WorkbenchStaff) -> HTMLResponse:
    """The batch form: a CSV or XLSX file of residents and items."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return _batch_page(request, who)


@router.post("/batch", response_class=HTMLResponse)
async def batch(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    file: UploadFile | None = None,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """File every row of the batch on its own and show each row's result.

    The form's key makes each row's client key, so the same form sent again files nothing twice:
    those rows answer 已提交过 (the submissions service's own idempotency, under the agent's lock).
    """
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    if not re.fullmatch(r"[A-Za-z0-9_-]{16,40}", idem):
        return _batch_page(request, who, errors={"_": "表单已失效，请刷新页面后重试"})
    data = await file.read(BATCH_FILE_MAX + 1) if file is not None and file.filename else b""
    if not data:
        return _batch_page(request, who, errors={"file": "请选择批量代办文件（.csv 或 .xlsx）"})
    if len(data) > BATCH_FILE_MAX:
        return _batch_page(request, who, errors={"file": "文件不超过2MB"})
    try:
        rows = read_batch(file.filename or "" if file else "", data)
    except FieldErrors as e:
        return _batch_page(request, who, errors=e.errors)
    try:
        await agent_station(session, who)
    except errors.NotAssigned as e:
        return _refused(request, who, e)
    items: list[Any] = []
    local: dict[int, str] = {}
    for index, row in enumerate(rows):
        phone = row.get("phone", "").strip()
        account = await accounts.find_by_phone(session, phone) if _PHONE.fullmatch(phone) else None
        try:
            if not _PHONE.fullmatch(phone):
                raise FieldErrors({"_": "手机号格式不正确"})
            if account is None or account.is_staff or not account.is_active:
                raise FieldErrors({"_": "未找到该手机号的居民账户，请先为其办理代办授权"})
            item = _submission(
                f"{idem}-{index + 1}",
                account.id,
                row.get("item_code", ""),
                row.get("address", ""),
                row.get("note", ""),
                row.get("pickup", "").strip() in {"是", "1", "Y", "y", "yes"},
            )
            items.append(item.model_dump())
        except FieldErrors as e:
            local[index] = "；".join(e.errors.values())
            items.append(None)
    to_file = [i for i in items if i is not None]
    filed = (await submissions.submit_batch(session, agent=who, items=to_file)).results if to_file else []
    answers = iter(filed)
    results = []
    for index, row in enumerate(rows):
        phone = row.get("phone", "").strip()
        shown = mask_phone(phone) if _PHONE.fullmatch(phone) else phone[:20]
        if index in local:
            results.append(
                {
                    "row": index + 2,
                    "phone": shown,
                    "item": row.get("item_code", ""),
                    "status": "failed",
                    "message": local[index],
                }
            )
            continue
        r = next(answers)
        app = r.get("application") or {}
        message = (app.get("number") and f"申请编号 {app.get('number')}") or ""
        if r["status"] == "failed":
            message = str((r.get("error") or {}).get("detail") or (r.get("error") or {}).get("title") or "")
        results.append(
            {
                "row": index + 2,
                "phone": shown,
                "item": row.get("item_code", ""),
                "status": r["status"],
                "message": message,
            }
        )
    summary = {s: sum(1 for r in results if r["status"] == s) for s in STATUS_ROW}
    return _batch_page(request, who, results=results, summary=summary, status_names=STATUS_ROW)


mount(router)
