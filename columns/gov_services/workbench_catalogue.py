"""The catalogue editors' screens of the staff workbench (``/workbench/catalogue``, role admin, as the
catalogue API's ``/admin/...`` routes).

- 事项目录: search the catalogue (the public search's index: names, synonyms, pinyin), filter by
  department; export it as XLSX or CSV; import a file, every row's errors shown on the page and
  nothing imported when there is one.
- an item: its guide as a form, one field per spreadsheet column (the same cell formats as import and
  export, so an editor learns one layout); 预览改动 shows what would change, 发布新版本 publishes it
  (residents' guide changes at once; filed applications keep their version).
- 版本记录: the item's versions, what each changed, and the difference between any two.

The screens parse forms into spreadsheet cells and hand them to the catalogue's own code:
:func:`catalogue_io.parse_rows` validates (every rule of :class:`CatalogueItem`, rules and fees
included), :func:`catalogue_store.edit_item` and :func:`catalogue_store.import_catalogue_file` write.
A form is published against the version it was opened on: if another editor published in between,
it is refused with the newer version named (under a write lock per item, so two publishes of one
item never both pass the check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app_api.core.clock import CHINA_TZ, china_today
from app_api.core.db import SessionDep, lock_for_writing, savepoint
from app_api.core.errors import AppError
from app_api.platform.accounts.principal import Principal
from app_api.platform.workbench import (
    IDEM_FIELD,
    FieldErrors,
    WorkbenchStaff,
    environment,
    forbidden,
    once,
    render,
)
from columns.gov_services import catalogue_io, catalogue_store
from columns.gov_services.catalogue import (
    APPLICANTS,
    DELIVERY_MODES,
    ECERT_TYPES,
    HANDLING_MODES,
    ITEM_TYPES,
    LEVELS,
    CatalogueItem,
)
from columns.gov_services.errors import CatalogueFileInvalid, ItemNotFound
from columns.gov_services.workbench_versions import changed_fields, diff, version_of, versions

ROLE = "admin"
BASE = "/api/v1/columns/gov_services/workbench/catalogue"
PAGE_SIZE = 50
IDENTITY_LEVELS = {"0": "无需认证", "1": "L1 手机号验证", "2": "L2 实名核验", "3": "L3 人脸识别"}
CSV_MEDIA = "text/csv; charset=utf-8"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# The edit form, section by section: (field, kind, options or None, hint). Field names and the
# headers shown are catalogue_io's columns; the code is the URL's and not editable.
SECTIONS: list[tuple[str, list[tuple[str, str, tuple[str, ...] | dict[str, str] | None, str]]]] = [
    (
        "基本信息",
        [
            ("name", "text", None, ""),
            ("item_type", "select", ITEM_TYPES, ""),
            ("department", "department", None, ""),
            ("level", "select", LEVELS, ""),
            ("summary", "textarea", None, ""),
            ("applicants", "checks", APPLICANTS, ""),
            ("synonyms", "text", None, "用顿号分隔，如：老年证、敬老证"),
            ("keywords", "text", None, "用顿号分隔"),
        ],
    ),
    (
        "受理条件与设定依据",
        [
            ("legal_basis", "textarea", None, "每行一条依据"),
            ("conditions", "textarea", None, "每行一项条件"),
            (
                "rules",
                "code",
                None,
                '每行一条 JSON，如：{"id": "age", "kind": "age_at_least", "value": 60, "condition": 1, '
                '"explain": "年满60周岁"}',
            ),
            ("instant_approval", "select", ("否", "是"), ""),
            ("instant_sample_percent", "number", None, "0-100"),
        ],
    ),
    (
        "申请材料与办理流程",
        [
            (
                "materials",
                "code",
                None,
                "每行一项：名称 | 必要 | 原件=1 | 复印件=0 | 电子证照=居民身份证 | "
                "回填=person.name,person.id_number",
            ),
            ("steps", "code", None, "每行一个环节：名称 | 办理人 | 时限（工作日） | 说明"),
        ],
    ),
    (
        "收费",
        [
            ("fee_yuan", "text", None, "元，免费填 0"),
            ("fee_basis", "textarea", None, "收费事项必填"),
            (
                "fee",
                "code",
                None,
                '留空则不在线收费；如：{"kind": "fixed", "amount_fen": 2000, "charge_at": "submit"}',
            ),
        ],
    ),
    (
        "办理时限",
        [
            ("promised_days", "number", None, "工作日"),
            ("statutory_days", "number", None, "工作日"),
        ],
    ),
    (
        "办理地点与送达",
        [
            ("handling_mode", "select", HANDLING_MODES, ""),
            ("max_visits", "number", None, "0-2；全程网办为 0"),
            ("where_to_go", "textarea", None, "需到现场的事项必填"),
            ("office_hours", "text", None, ""),
            ("delivery", "checks", DELIVERY_MODES, ""),
            ("result_name", "text", None, ""),
            ("result_ecert", "select", ("", *ECERT_TYPES), "办结后签发的电子证照（可不选）"),
            ("result_paper", "select", ("否", "是"), ""),
            ("contact_phone", "text", None, "如 0558-5511001"),
            ("consult_phone", "text", None, "如 0558-5511001"),
        ],
    ),
    ("身份认证", [("identity_level", "select", IDENTITY_LEVELS, "居民申请本事项须达到的认证等级")]),
]
FORM_FIELDS = [f for _, fields in SECTIONS for f, _, _, _ in fields]
MULTI = {f for _, fields in SECTIONS for f, kind, _, _ in fields if kind == "checks"}

_env = environment(Path(__file__).parent / "templates" / "workbench")
_env.filters["china"] = lambda t: t.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M") if t else ""
_env.globals["header_of"] = catalogue_io.HEADER_OF

router = APIRouter(prefix="/catalogue", tags=["workbench"])


def _no_store(target: str) -> RedirectResponse:
    return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})


# ---------------------------------------------------------------- search, import, export


@router.get("", response_class=HTMLResponse)
async def catalogue(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    q: Annotated[str, Query(max_length=100)] = "",
    department: Annotated[str, Query(max_length=60)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    imported: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    """事项目录: search and filter the catalogue; import and export it."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    return await _catalogue(request, session, who, q=q, department=department, page=page, imported=imported)


async def _catalogue(
    request: Request,
    session: SessionDep,
    who: Principal,
    *,
    q: str = "",
    department: str = "",
    page: int = 1,
    imported: str = "",
    import_errors: list[dict[str, Any]] | None = None,
    import_message: str = "",
    status_code: int = 200,
) -> HTMLResponse:
    index, items = await catalogue_store.catalogue_snapshot(session)
    if q.strip():
        hits = index.search(q, department=department or None, limit=PAGE_SIZE)
        found = [items[h.code] for h in hits if h.code in items]
        total = len(found)
    else:
        every = sorted(
            (i for i in items.values() if not department or i.department == department), key=lambda i: i.code
        )
        total = len(every)
        found = every[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    counts = dict(zip(("created", "updated", "unchanged"), imported.split("-"), strict=False))
    return render(
        _env,
        "catalogue.html",
        request,
        who,
        status_code=status_code,
        items=found,
        total=total,
        q=q,
        department=department,
        departments=[d.name for d in await catalogue_store.departments(session)],
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)) if not q.strip() else 1,
        imported=counts if imported else None,
        import_errors=import_errors or [],
        import_message=import_message,
        base=BASE,
    )


@router.get("/export")
async def export(
    request: Request, who: WorkbenchStaff, session: SessionDep, format: Annotated[str, Query()] = "xlsx"
) -> Response:
    """The current catalogue as XLSX or CSV (the import's layout)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    items = await catalogue_store.current_items(session)
    if format == "csv":
        body, media = catalogue_io.write_csv(items), CSV_MEDIA
    else:
        format, body, media = "xlsx", catalogue_io.write_xlsx(items), XLSX_MEDIA
    name = f"事项目录-{china_today():%Y%m%d}.{format}"
    return Response(
        body,
        media_type=media,
        headers={
            "content-disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "cache-control": "no-store",
        },
    )


@router.post("/import", response_class=HTMLResponse)
async def import_file(
    request: Request,
    who: WorkbenchStaff,
    session: SessionDep,
    file: Annotated[UploadFile | None, File()] = None,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
) -> Response:
    """Import a catalogue file: all rows or none; every row's error listed on the page."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    name = (file.filename or "") if file is not None else ""
    data = await file.read(catalogue_io.MAX_FILE_BYTES + 1) if file is not None else b""

    async def run() -> str:
        if not name or not data:
            raise FieldErrors({"file": "请选择要导入的 .xlsx 或 .csv 文件"})
        if len(data) > catalogue_io.MAX_FILE_BYTES:
            raise FieldErrors({"file": "目录文件不能超过 20MB"})
        if not name.lower().endswith((".xlsx", ".csv")):
            raise FieldErrors({"file": "仅支持 .xlsx 或 .csv 文件"})
        async with savepoint(session):
            counts = await catalogue_store.import_catalogue_file(
                session, data=data, filename=name, actor_id=who.id
            )
        shown = "-".join(str(counts[k]) for k in ("created", "updated", "unchanged"))
        return f"{BASE}?{urlencode({'imported': shown})}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _catalogue(
            request, session, who, import_message=e.errors["file"], status_code=422, import_errors=[]
        )
    except CatalogueFileInvalid as e:
        return await _catalogue(
            request,
            session,
            who,
            import_message=e.detail,
            import_errors=list(e.extra.get("errors", [])),
            status_code=422,
        )
    except AppError as e:
        return await _catalogue(request, session, who, import_message=e.detail, status_code=422)
    return _no_store(target)


# ---------------------------------------------------------------- one item: edit and publish


def _values(item: CatalogueItem) -> dict[str, str]:
    """The form's values of an item: its spreadsheet cells by field name."""
    cells = catalogue_io.item_to_row(item)
    return {f: cells[h] for f, h in catalogue_io.COLUMNS}


def _cells(code: str, form: dict[str, Any]) -> dict[str, str]:
    """The posted form as spreadsheet cells by header (checkbox groups joined as the sheet writes them)."""
    cells = {catalogue_io.HEADER_OF["code"]: code}
    for f in FORM_FIELDS:
        value = form.get(f)
        text = "、".join(str(v) for v in value) if isinstance(value, list) else str(value or "")
        cells[catalogue_io.HEADER_OF[f]] = text
    return cells


def _parse(
    code: str, form: dict[str, Any], departments: set[str], fallback: CatalogueItem | None
) -> CatalogueItem:
    """The item the form describes, checked by the importer's own row check; FieldErrors by field.

    The importer stops a row at its first unreadable cell; so that the editor sees every field's
    problem at once, a field found wrong is checked again with that field's value from the version
    the form was opened on (``fallback``), until no field-level error is left. A whole-item error
    (no field named) is reported only when nothing was substituted, so it is always about what was
    typed."""
    cells = _cells(code, form)
    header = list(cells)
    known = catalogue_io.item_to_row(fallback) if fallback is not None else {}
    out: dict[str, str] = {}
    substituted = False
    for _ in range(len(FORM_FIELDS) + 1):
        items, errors = catalogue_io.parse_rows(
            header, [(2, [cells[h] for h in header])], known_departments=departments
        )
        if not errors:
            break
        swap = []
        for e in errors:
            column = e["column"] or ""
            key = catalogue_io.FIELD_OF.get(column, "_")
            key = "_" if key == "code" else key
            if key == "_" and substituted:
                continue
            out[key] = f"{out[key]}；{e['message']}" if key in out else str(e["message"])
            if column in known and cells[column] != known[column]:
                swap.append(column)
        if not swap or any(not e["column"] for e in errors):
            break
        for column in swap:
            cells[column] = known[column]
        substituted = True
    if out:
        raise FieldErrors(out)
    return items[0]


async def _item_page(
    request: Request,
    session: SessionDep,
    who: Principal,
    code: str,
    *,
    version: int,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    preview: list[Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        _env,
        "catalogue_item.html",
        request,
        who,
        status_code=status_code,
        code=code,
        version=version,
        values=values,
        errors=errors or {},
        preview=preview,
        sections=SECTIONS,
        departments=[d.name for d in await catalogue_store.departments(session)],
        base=BASE,
    )


@router.get("/items/{code}", response_class=HTMLResponse)
async def item_page(request: Request, code: str, who: WorkbenchStaff, session: SessionDep) -> HTMLResponse:
    """An item's current guide as a form to edit."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    try:
        row, item = await catalogue_store.get_item(session, code=code)
    except ItemNotFound:
        return _not_found(request, who, code)
    return await _item_page(request, session, who, code, version=row.version, values=_values(item))


def _not_found(request: Request, who: Principal, code: str) -> HTMLResponse:
    return render(_env, "catalogue_missing.html", request, who, status_code=404, code=code, base=BASE)


async def _form_of(request: Request) -> dict[str, Any]:
    posted = await request.form()
    return {f: (posted.getlist(f) if f in MULTI else str(posted.get(f) or "")) for f in FORM_FIELDS}


@router.post("/items/{code}", response_class=HTMLResponse)
async def publish(
    request: Request,
    code: str,
    who: WorkbenchStaff,
    session: SessionDep,
    idem: Annotated[str, Form(alias=IDEM_FIELD)] = "",
    base_version: Annotated[int, Form(ge=0)] = 0,
    step: Annotated[str, Form(max_length=10)] = "publish",
) -> Response:
    """预览改动 (``step=preview``: what would change, nothing saved) or 发布新版本: a new version of the
    item, opened on ``base_version``; residents see it at once."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    form = await _form_of(request)
    departments = {d.name for d in await catalogue_store.departments(session)}

    if step == "preview":
        try:
            _, current = await catalogue_store.get_item(session, code=code)
        except ItemNotFound:
            return _not_found(request, who, code)
        try:
            item = _parse(code, form, departments, current)
        except FieldErrors as e:
            return await _item_page(
                request,
                session,
                who,
                code,
                version=base_version,
                values=form,
                errors=e.errors,
                status_code=422,
            )
        return await _item_page(
            request, session, who, code, version=base_version, values=form, preview=diff(current, item)
        )

    opened = await version_of(session, code=code, number=base_version)
    fallback = catalogue_store.version_item(opened) if opened is not None else None

    async def run() -> str:
        item = _parse(code, form, departments, fallback)
        # One publisher of this item at a time, and the version read under that lock (nothing of the
        # item was loaded before it in this session, so the read is fresh).
        await lock_for_writing(session, key=f"gov_services.item:{code}")
        async with savepoint(session):
            now, latest = await catalogue_store.get_item(session, code=code)
            done = f"{BASE}/items/{code}/versions?{urlencode({'published': now.version})}"
            if latest == item:
                if now.version != base_version:
                    return done  # this very form was published already (a resent form)
                raise FieldErrors({"_": "内容与当前版本相同，未发布新版本"})
            if now.version != base_version:
                raise FieldErrors(
                    {
                        "_": f"该事项已被其他人修改为第 {now.version} 版（您编辑的是第 {base_version} 版），"
                        "请打开最新版本后重新修改"
                    }
                )
            try:
                published = await catalogue_store.edit_item(session, data=item, actor_id=who.id)
            except sa.exc.IntegrityError as e:
                raise FieldErrors({"_": "该事项正被其他人同时发布，请打开最新版本后重新修改"}) from e
        return f"{BASE}/items/{code}/versions?{urlencode({'published': published.version})}"

    try:
        target = await once(who, idem, run)
    except FieldErrors as e:
        return await _item_page(
            request,
            session,
            who,
            code,
            version=base_version,
            values=form,
            errors=e.errors,
            status_code=422,
        )
    except ItemNotFound:
        return _not_found(request, who, code)
    except AppError as e:
        return await _item_page(
            request,
            session,
            who,
            code,
            version=base_version,
            values=form,
            errors={"_": e.detail},
            status_code=422,
        )
    return _no_store(target)


# ---------------------------------------------------------------- version history and diff


@router.get("/items/{code}/versions", response_class=HTMLResponse)
async def history(
    request: Request,
    code: str,
    who: WorkbenchStaff,
    session: SessionDep,
    a: Annotated[int | None, Query(ge=1)] = None,
    b: Annotated[int | None, Query(ge=1)] = None,
    published: Annotated[int | None, Query(ge=1)] = None,
) -> HTMLResponse:
    """版本记录: the item's versions, what each changed, and the difference between versions ``a``
    and ``b`` (by default the one before the current and the current)."""
    if (denied := forbidden(request, who, ROLE)) is not None:
        return denied
    rows = await versions(session, code=code)
    if not rows:
        return _not_found(request, who, code)
    by_number = {v.version: v for v in rows}
    newest = rows[0].version
    b = b if b in by_number else newest
    older = [n for n in by_number if n < b]
    a = a if a in by_number else (max(older) if older else b)
    old, new = catalogue_store.version_item(by_number[a]), catalogue_store.version_item(by_number[b])
    return render(
        _env,
        "catalogue_versions.html",
        request,
        who,
        code=code,
        item_name=catalogue_store.version_item(rows[0]).name,
        rows=rows,
        newest=newest,
        changed=changed_fields(rows),
        a=a,
        b=b,
        changes=diff(old, new) if a != b else [],
        published=published,
        base=BASE,
    )
