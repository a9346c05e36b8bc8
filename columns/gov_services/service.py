"""The government services column's business rules. Services take the session and keyword-only
arguments, raise domain errors, and only ``flush()``: the caller commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str, mask_id_number
from app_api.core.db import savepoint, utcnow
from app_api.core.errors import IdentityLevelRequired, ValidationFailed
from app_api.core.jobs import outbox
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent import service as consent
from app_api.platform.datahub.service import get_datahub
from columns.gov_services import catalogue_io, workdays
from columns.gov_services.catalogue import (
    CONSENT_GROUPS,
    CONSENT_SCOPES,
    ECERT_CODES,
    RECORD_FIELDS,
    CatalogueItem,
    seed_catalogue,
)
from columns.gov_services.catalogue import Department as DepartmentData
from columns.gov_services.config import get_config
from columns.gov_services.errors import (
    AlreadyRated,
    ApplicationNotFound,
    DeliveryInvalid,
    IdentityRecordMissing,
    InvalidTransition,
    ItemNotFound,
    MaterialsMissing,
    OutsideDepartment,
)
from columns.gov_services.models import (
    ACCEPTED,
    APPROVED,
    DECIDED_STATES,
    DELIVERED,
    DRAFT,
    POSTED,
    REJECTED,
    STATUS_NAMES,
    SUBMITTED,
    SUPPLEMENT,
    Application,
    Department,
    Event,
    Item,
    ItemVersion,
    Rating,
    Upload,
    Waybill,
)
from columns.gov_services.search import CatalogueIndex, build_index
from columns.gov_services.storage import check_upload, get_storage

PREFILL_PURPOSE = "gov_services.prefill"
# Steps outside the department's review stage: the resident's own, acceptance, delivery.
NON_REVIEW_STEPS = ("申请", "预约", "报名", "受理", "送达")
# What an agent captures at the station rather than types in (the photo is taken there).
IN_PERSON_FIELDS = {"person.photo"}

notify.register_template(
    "gov.submitted", "您申请的“$item”已提交（申请编号$number），我们将在$days个工作日内办结。"
)
notify.register_template(
    "gov.status_changed",
    "您申请的“$item”（编号$number）$status。$note",
    wechat_fields={"thing1": "$item", "phrase2": "$status", "character_string3": "$number"},
)
notify.register_template(
    "gov.supplement", "您申请的“$item”（编号$number）需要补正材料：$reason。补正期间不计入办理时限。"
)
notify.register_template("gov.posted", "您申请的“$item”办理结果已免费寄出，邮件号$tracking_no，请注意查收。")
notify.register_template(
    "gov.warning",
    "【电子监察$level】$department 申请$number（$item）已用$elapsed个工作日，时限$limit个工作日。",
    category="gov_supervision",
)
notify.register_template("gov.follow_up", "您对“$item”的评价已收到，$department 将在3个工作日内回访。")
notify.register_template("gov.follow_up_answered", "$department 对您的评价回复：$answer")


# ---------------------------------------------------------------- catalogue


def _version_item(v: ItemVersion) -> CatalogueItem:
    return CatalogueItem.model_validate(v.data)


async def known_departments(session: AsyncSession) -> set[str]:
    return set((await session.exec(select(Department.name))).all())


async def upsert_departments(session: AsyncSession, departments: Iterable[DepartmentData]) -> int:
    existing = {d.name: d for d in (await session.exec(select(Department))).all()}
    added = 0
    for d in departments:
        row = existing.get(d.name)
        if row is None:
            session.add(Department(**d.model_dump()))
            added += 1
        else:
            for k, v in d.model_dump().items():
                setattr(row, k, v)
            session.add(row)
    await session.flush()
    return added


async def upsert_items(
    session: AsyncSession, *, items: Sequence[CatalogueItem], actor_id: str | None
) -> dict[str, int]:
    """Create new items and a new version of every changed one; unchanged items stay as they are."""
    codes = [i.code for i in items]
    current: dict[str, tuple[Item, ItemVersion]] = {}
    for chunk_start in range(0, len(codes), 500):
        chunk = codes[chunk_start : chunk_start + 500]
        rows = (
            await session.exec(
                select(Item, ItemVersion)
                .join(ItemVersion, col(ItemVersion.id) == col(Item.current_version_id))
                .where(col(Item.code).in_(chunk))
            )
        ).all()
        current.update({item.code: (item, ver) for item, ver in rows})
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    now = utcnow()
    for data in items:
        found = current.get(data.code)
        if found is not None and _version_item(found[1]) == data:
            counts["unchanged"] += 1
            continue
        number = found[0].version + 1 if found else 1
        version = ItemVersion(
            code=data.code, version=number, data=data.model_dump(mode="json"), created_by=actor_id
        )
        session.add(version)
        if found is None:
            item = Item(
                code=data.code,
                current_version_id=version.id,
                name=data.name,
                item_type=data.item_type,
                department=data.department,
            )
            counts["created"] += 1
        else:
            item = found[0]
            counts["updated"] += 1
        item.name = data.name
        item.item_type = data.item_type
        item.department = data.department
        item.identity_level = data.identity_level
        item.promised_days = data.promised_days
        item.fully_online = data.fully_online
        item.version = number
        item.current_version_id = version.id
        item.active = True
        item.updated_at = now
        session.add(item)
    await session.flush()
    if counts["created"] or counts["updated"]:
        await audit.record(
            session,
            action="gov_services.catalogue_changed",
            actor_id=actor_id,
            subject_type="gov_services_catalogue",
            data=counts,
        )
    return counts


async def seed(session: AsyncSession) -> str:
    """Load the shipped departments and items (idempotent; used by ``wojia seed`` and tests)."""
    cat = seed_catalogue()
    added = await upsert_departments(session, cat.departments)
    counts = await upsert_items(session, items=cat.items, actor_id=None)
    return f"departments +{added}, items {counts}"


async def import_catalogue_file(
    session: AsyncSession, *, data: bytes, filename: str, actor_id: str
) -> dict[str, int]:
    items = catalogue_io.import_catalogue(
        data, filename=filename, known_departments=await known_departments(session)
    )
    return await upsert_items(session, items=items, actor_id=actor_id)


async def current_items(session: AsyncSession) -> list[CatalogueItem]:
    rows = (
        await session.exec(
            select(ItemVersion)
            .join(Item, col(Item.current_version_id) == col(ItemVersion.id))
            .where(col(Item.active).is_(True))
            .order_by(col(Item.code))
        )
    ).all()
    return [_version_item(v) for v in rows]


async def get_item(session: AsyncSession, *, code: str) -> tuple[Item, CatalogueItem]:
    row = (
        await session.exec(
            select(Item, ItemVersion)
            .join(ItemVersion, col(ItemVersion.id) == col(Item.current_version_id))
            .where(Item.code == code, col(Item.active).is_(True))
        )
    ).first()
    if row is None:
        raise ItemNotFound(item_code=code)
    return row[0], _version_item(row[1])


async def edit_item(session: AsyncSession, *, data: CatalogueItem, actor_id: str) -> Item:
    """An administrator's edit: a new version; applications keep the version they were filed under."""
    if data.department not in await known_departments(session):
        raise ValidationFailed(f"未知的实施部门：{data.department}")
    await get_item(session, code=data.code)
    await upsert_items(session, items=[data], actor_id=actor_id)
    item, _ = await get_item(session, code=data.code)
    return item


@dataclass
class _IndexCache:
    stamp: tuple[int, str] | None = None
    index: CatalogueIndex | None = None
    items: dict[str, CatalogueItem] | None = None


_cache = _IndexCache()


async def catalogue_snapshot(session: AsyncSession) -> tuple[CatalogueIndex, dict[str, CatalogueItem]]:
    """The search index and items, rebuilt only when the catalogue changed (any process's edit)."""
    count, latest = (
        await session.exec(
            select(sa.func.count(), sa.func.max(Item.updated_at)).where(col(Item.active).is_(True))
        )
    ).one()
    stamp = (int(count), str(latest))
    if _cache.stamp != stamp or _cache.index is None or _cache.items is None:
        items = await current_items(session)
        _cache.items = {i.code: i for i in items}
        _cache.index = build_index(i.search_row() for i in items)
        _cache.stamp = stamp
    return _cache.index, _cache.items


# ---------------------------------------------------------------- applications


def _new_number() -> str:
    now = utcnow().astimezone(workdays.TZ)
    return f"{now:%Y%m%d}{secrets.randbelow(10**8):08d}"


def _form(app: Application) -> dict[str, Any]:
    if app.form_enc is None:
        return {}
    result: dict[str, Any] = json.loads(decrypt_str(app.form_enc, aad=f"gov_app:{app.id}"))
    return result


def _set_form(app: Application, form: dict[str, Any]) -> None:
    app.form_enc = encrypt_str(json.dumps(form, ensure_ascii=False), aad=f"gov_app:{app.id}")


def address_of(app: Application) -> dict[str, str] | None:
    if app.address_enc is None:
        return None
    result: dict[str, str] = json.loads(decrypt_str(app.address_enc, aad=f"gov_addr:{app.id}"))
    return result


async def version_of(session: AsyncSession, app: Application) -> CatalogueItem:
    v = await session.get(ItemVersion, app.item_version_id)
    assert v is not None
    return _version_item(v)


async def _event(
    session: AsyncSession,
    app: Application,
    *,
    kind: str,
    title: str,
    actor: Principal | None,
    role: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        Event(
            application_id=app.id,
            kind=kind,
            title=title,
            note=note,
            actor_id=actor.id if actor else None,
            actor_role=role,
            data=data or {},
        )
    )
    await audit.record(
        session,
        action=f"gov_services.application_{kind}",
        actor_id=actor.id if actor else None,
        subject_type="gov_services_application",
        subject_id=app.id,
        data={"status": app.status, "item": app.item_code, **(data or {})},
    )


async def create_application(
    session: AsyncSession, *, principal: Principal, item_code: str, client_key: str
) -> tuple[Application, bool]:
    """A draft under the item's current version; the same client key gives back the same draft."""
    existing = (
        await session.exec(
            select(Application).where(
                Application.applicant_id == principal.id, Application.client_key == client_key
            )
        )
    ).first()
    if existing is not None:
        if existing.item_code != item_code:
            raise ValidationFailed("该请求编号已用于其他事项的申请", client_key=client_key)
        return existing, False
    item_row, item = await get_item(session, code=item_code)
    if principal.identity_level < item.identity_level:
        raise IdentityLevelRequired(item.identity_level, principal.identity_level)
    accept_step = next((s.days for s in item.steps if s.name == "受理"), 1)
    review_steps = sum(s.days for s in item.steps if s.name not in NON_REVIEW_STEPS)
    for _attempt in range(5):
        app = Application(
            number=_new_number(),
            client_key=client_key,
            applicant_id=principal.id,
            agent_id=None,
            item_code=item.code,
            item_version_id=item_row.current_version_id,
            item_version=item_row.version,
            item_name=item.name,
            department=item.department,
            limit_days=item.promised_days,
            accept_limit_days=max(accept_step, 1),
            review_limit_days=review_steps,
        )
        try:
            async with savepoint(session):
                session.add(app)
                await session.flush()
            break
        except sa.exc.IntegrityError:
            # Either a concurrent request with the same client key won (return its draft), or the
            # random application number collided with another day's-worth of numbers (draw again).
            again = (
                await session.exec(
                    select(Application).where(
                        Application.applicant_id == principal.id, Application.client_key == client_key
                    )
                )
            ).first()
            if again is not None:
                return again, False
    else:
        raise InvalidTransition("申请编号生成失败，请重试")
    await _event(session, app, kind="drafted", title="创建申请草稿", actor=principal, role="resident")
    return app, True


async def owned_application(session: AsyncSession, *, app_id: str, principal: Principal) -> Application:
    app = await session.get(Application, app_id)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    return app


def prefill_preview(item: CatalogueItem) -> list[dict[str, Any]]:
    """Per consent group: which fields and materials would be filled, and the consent text."""
    groups: dict[str, dict[str, Any]] = {}
    for m in item.materials:
        for f in m.fill_fields:
            g = groups.setdefault(f.split(".", 1)[0], {"fields": {}, "materials": []})
            g["fields"][f] = RECORD_FIELDS[f]
            if m.name not in g["materials"]:
                g["materials"].append(m.name)
        if m.ecert:
            g = groups.setdefault("certificate", {"fields": {}, "materials": []})
            g["fields"][f"certificate.{m.ecert}"] = f"电子证照：{m.ecert}"
            g["materials"].append(m.name)
    return [
        {
            "group": g,
            "consent_text": f"同意{item.department}为办理“{item.name}”调取您的{CONSENT_GROUPS[g]}",
            "fields": [{"key": k, "label": v} for k, v in groups[g]["fields"].items()],
            "materials": groups[g]["materials"],
        }
        for g in CONSENT_GROUPS
        if g in groups
    ]


async def prefill(
    session: AsyncSession, *, app: Application, principal: Principal, groups: list[str]
) -> dict[str, Any]:
    """Record a consent per group the resident agreed to, then fill from the data center."""
    if app.status not in (DRAFT, SUPPLEMENT):
        raise InvalidTransition("申请已提交，不能再修改")
    item = await version_of(session, app)
    offered = {p["group"]: p for p in prefill_preview(item)}
    unknown = [g for g in groups if g not in offered]
    if unknown or not groups:
        raise ValidationFailed("请选择本事项可授权的信息类别", allowed=list(offered))
    account = await session.get(Account, principal.id)
    id_number = account.id_number if account else None
    if not id_number:
        raise IdentityRecordMissing("调取信息需要先完成实名认证（身份证号核验）")
    hub = get_datahub()
    form = _form(app)
    consents = dict(app.consents)
    ecerts = dict(app.ecerts)
    wanted = {f for m in item.materials for f in m.fill_fields}
    for g in groups:
        c = await consent.grant(
            session,
            account_id=principal.id,
            purpose=PREFILL_PURPOSE,
            scopes=[CONSENT_SCOPES[g]],
            text=offered[g]["consent_text"],
            grantee="gov_services",
            ttl=dt.timedelta(days=30),
        )
        consents[g] = c.id
        common: dict[str, Any] = {
            "accessor_id": principal.id,
            "purpose": PREFILL_PURPOSE,
            "consent_id": c.id,
            "subject_account_id": principal.id,
        }
        if g == "person":
            p = await hub.person(session, id_number=id_number, **common)
            values = {
                "person.name": p.name,
                "person.id_number": p.id_number,
                "person.gender": p.gender,
                "person.birth_date": p.birth_date.isoformat(),
                "person.address": p.address,
                "person.household": p.household,
                "person.photo": "人口库证件照" if p.photo else None,
            }
            form.update({k: v for k, v in values.items() if k in wanted and v is not None})
        elif g == "legal_person":
            found = await hub.legal_persons(session, rep_id_number=id_number, **common)
            if found:
                lp = found[0]
                values = {
                    "legal_person.name": lp.name,
                    "legal_person.credit_code": lp.uscc,
                    "legal_person.representative": lp.legal_rep_name,
                    "legal_person.address": lp.address,
                    "legal_person.business_scope": lp.business_scope,
                }
                form.update({k: v for k, v in values.items() if k in wanted})
        elif g == "certificate":
            certs = await hub.certificates(session, id_number=id_number, **common)
            for m in item.materials:
                if not m.ecert:
                    continue
                match = next(
                    (c for c in certs if c.cert_type == ECERT_CODES[m.ecert] or c.title == m.ecert), None
                )
                if match is not None:
                    ecerts[m.name] = {
                        "id": match.id,
                        "cert_no": match.cert_no,
                        "title": match.title,
                        "issuer": match.issuer,
                        "valid_until": match.valid_until.isoformat() if match.valid_until else None,
                    }
    _set_form(app, form)
    app.consents = consents
    app.ecerts = ecerts
    app.updated_at = utcnow()
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="prefilled",
        title="授权调取信息",
        actor=principal,
        role="resident",
        data={"groups": groups},
    )
    return application_form_view(app, item)


def application_form_view(app: Application, item: CatalogueItem) -> dict[str, Any]:
    """What the resident sees of the filled form: labels and values, the ID number masked."""
    form = _form(app)
    fields = []
    for key, value in form.items():
        shown = mask_id_number(value) if key.endswith("id_number") and isinstance(value, str) else value
        fields.append({"key": key, "label": RECORD_FIELDS.get(key, key), "value": shown})
    return {"fields": fields, "ecerts": app.ecerts, "consents": app.consents}


async def add_upload(
    session: AsyncSession,
    *,
    app: Application,
    principal: Principal,
    material: str,
    filename: str,
    content_type: str | None,
    data: bytes,
) -> Upload:
    if app.status not in (DRAFT, SUPPLEMENT):
        raise InvalidTransition("申请已提交，不能再上传材料")
    item = await version_of(session, app)
    if material not in {m.name for m in item.materials}:
        raise ValidationFailed(
            f"本事项没有名为“{material}”的材料", materials=[m.name for m in item.materials]
        )
    kind = check_upload(
        data, filename=filename, declared_type=content_type, max_bytes=get_config().upload_max_bytes
    )
    upload = Upload(
        application_id=app.id,
        owner_id=principal.id,
        material=material,
        filename=filename[-200:] or "upload",
        kind=kind,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key="",
    )
    upload.storage_key = f"{app.id}/{upload.id}.{kind}"
    await get_storage().put(upload.storage_key, data)
    session.add(upload)
    await session.flush()
    await _event(
        session,
        app,
        kind="uploaded",
        title=f"上传材料：{material}",
        actor=principal,
        role="resident",
        data={"material": material, "kind": kind, "size": len(data)},
    )
    return upload


async def _uploaded_materials(session: AsyncSession, app: Application) -> set[str]:
    return set((await session.exec(select(Upload.material).where(Upload.application_id == app.id))).all())


async def missing_materials(session: AsyncSession, app: Application, item: CatalogueItem) -> list[str]:
    uploaded = await _uploaded_materials(session, app)
    form = _form(app)
    missing = []
    for m in item.materials:
        if not m.required or m.condition:
            continue
        if m.name in uploaded or m.name in app.ecerts:
            continue
        if m.fill_fields and not m.ecert and all(f in form for f in m.fill_fields):
            continue
        missing.append(m.name)
    return missing


def _check_delivery(item: CatalogueItem, delivery: str | None, address: dict[str, str] | None) -> str:
    choice = delivery or item.delivery[0]
    if choice not in item.delivery:
        raise DeliveryInvalid(
            f"本事项支持的送达方式：{'、'.join(item.delivery)}", allowed=list(item.delivery)
        )
    if choice == "免费邮寄" and (
        not address or not all((address.get(k) or "").strip() for k in ("name", "phone", "address"))
    ):
        raise DeliveryInvalid("选择免费邮寄时，请填写收件人、电话和地址")
    return choice


async def submit(
    session: AsyncSession,
    *,
    app_id: str,
    principal: Principal,
    delivery: str | None,
    address: dict[str, str] | None,
    actor_role: str = "resident",
) -> Application:
    """Submit a draft. Submitting an already submitted application changes nothing (idempotent)."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    if app.status != DRAFT:
        return app
    item = await version_of(session, app)
    if principal.identity_level < item.identity_level:
        raise IdentityLevelRequired(item.identity_level, principal.identity_level)
    choice = _check_delivery(item, delivery, address)
    missing = await missing_materials(session, app, item)
    if missing:
        raise MaterialsMissing(f"还缺少：{'、'.join(missing)}", missing=missing)
    if not await _claim(session, app, [DRAFT], SUBMITTED):
        return app  # a concurrent submit of the same draft won; same outcome
    now = utcnow()
    app.delivery = choice
    if choice == "免费邮寄" and address:
        clean = {k: address[k].strip() for k in ("name", "phone", "address")}
        app.address_enc = encrypt_str(json.dumps(clean, ensure_ascii=False), aad=f"gov_addr:{app.id}")
    app.submitted_at = now
    app.due_at = workdays.due_at(now, app.limit_days)
    app.updated_at = now
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="submitted",
        title="提交申请",
        actor=principal,
        role=actor_role,
        data={"delivery": choice, "version": app.item_version},
    )
    await notify.send(
        session,
        account_id=app.applicant_id,
        template="gov.submitted",
        params={"item": app.item_name, "number": app.number, "days": app.limit_days},
    )
    return app


async def file_on_behalf(
    session: AsyncSession,
    *,
    resident_id: str,
    agent_id: str,
    station_id: str,
    mandate_id: str,
    item_code: str,
    form: dict[str, Any],
    client_key: str,
    delivery: dict[str, Any] | None,
) -> Application:
    """An agent (代办员) files for a resident under a recorded mandate (see ``app_api.platform.agents``).

    The agent checked the resident and the original materials in person at the station, which is
    the non-face alternative to L3 and stands in for uploads; the result can be posted to the
    station. Idempotent on the resident's client key, like a resident's own application.
    """
    account = await session.get(Account, resident_id)
    if account is None or not account.is_active:
        raise ApplicationNotFound("未找到该居民账户")
    if not account.id_number:
        raise IdentityRecordMissing("该居民尚未登记身份证号，无法代办")
    # In-person identity check by the agent: counts as the highest level for this filing.
    principal = Principal(id=account.id, roles=tuple(account.roles), identity_level=3)
    app, created = await create_application(
        session, principal=principal, item_code=item_code, client_key=client_key
    )
    if not created or app.status != DRAFT:
        return app
    item = await version_of(session, app)
    values = {k: v for k, v in form.items() if isinstance(v, str | int | float) and len(str(v)) <= 500}
    number = account.id_number
    # GB 11643: birth date in digits 7-14, sex in digit 17 (odd: male).
    filled: dict[str, Any] = {
        "person.name": account.real_name,
        "person.id_number": number,
        "person.birth_date": f"{number[6:10]}-{number[10:12]}-{number[12:14]}",
        "person.gender": "男" if int(number[16]) % 2 else "女",
    }
    filled.update({k: v for k, v in values.items() if k in RECORD_FIELDS})
    notes = {k: v for k, v in values.items() if k not in RECORD_FIELDS}
    _set_form(
        app, {k: v for k, v in filled.items() if v is not None} | ({"agent.notes": notes} if notes else {})
    )
    app.agent_id = agent_id
    app.ecerts = {
        m.name: {
            "verified_in_person": True,
            "agent_id": agent_id,
            "station_id": station_id,
            "mandate_id": mandate_id,
        }
        for m in item.materials
        if m.required and not m.condition and (m.ecert or set(m.fill_fields) <= IN_PERSON_FIELDS)
    }
    address = None
    choice: str | None = None
    if delivery and delivery.get("method") == "station" and "免费邮寄" in item.delivery:
        choice = "免费邮寄"
        address = {
            "name": f"{delivery.get('station_name') or '代办点'}（代{account.real_name or '居民'}领取）",
            "phone": account.phone,
            "address": str(delivery.get("address") or ""),
        }
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="agent_filed",
        title="代办员现场核验材料并代为申请",
        actor=None,
        role="agent",
        data={"agent_id": agent_id, "station_id": station_id, "mandate_id": mandate_id},
    )
    return await submit(
        session, app_id=app.id, principal=principal, delivery=choice, address=address, actor_role="agent"
    )


async def supply_supplement(session: AsyncSession, *, app_id: str, principal: Principal) -> Application:
    """The resident has supplied what was asked: the clock runs again."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    if app.status != SUPPLEMENT:
        raise InvalidTransition("当前无需补正材料")
    item = await version_of(session, app)
    missing = await missing_materials(session, app, item)
    if missing:
        raise MaterialsMissing(f"还缺少：{'、'.join(missing)}", missing=missing)
    await _transition(session, app, [SUPPLEMENT], ACCEPTED)
    now = utcnow()
    _close_pause(app, now)
    app.due_at = workdays.due_at(_start(app), app.limit_days, pauses=pauses_of(app))
    app.updated_at = now
    session.add(app)
    await session.flush()
    await _event(
        session, app, kind="supplemented", title="补正材料，恢复计时", actor=principal, role="resident"
    )
    return app


def _start(app: Application) -> dt.datetime:
    assert app.submitted_at is not None
    return app.submitted_at


def _record_decision(app: Application, at: dt.datetime) -> None:
    """Freeze the supervision outcome of a decision (used days, on time, same day)."""
    app.decided_at = at
    if app.submitted_at is not None:
        used = workdays.elapsed_working_days(app.submitted_at, at, pauses=pauses_of(app))
        app.used_days = round(used, 3)
        app.on_time = used <= app.limit_days
        app.same_day = workdays.same_day(app.submitted_at, at)


def pauses_of(app: Application) -> list[workdays.Pause]:
    return [
        (dt.datetime.fromisoformat(p[0]), dt.datetime.fromisoformat(p[1]) if p[1] else None)
        for p in app.pauses
    ]


def _close_pause(app: Application, now: dt.datetime) -> None:
    pauses = [list(p) for p in app.pauses]
    if pauses and pauses[-1][1] is None:
        pauses[-1][1] = now.isoformat()
    app.pauses = pauses


# ---------------------------------------------------------------- review


async def reviewable(session: AsyncSession, *, app_id: str, principal: Principal) -> Application:
    """Load an application for a reviewer, refusing one of another department."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.status == DRAFT:
        raise ApplicationNotFound()
    if not principal.department or principal.department != app.department:
        raise OutsideDepartment(department=app.department)
    return app


async def queue(session: AsyncSession, *, principal: Principal, status: str | None) -> list[Application]:
    q = select(Application).where(Application.department == (principal.department or ""))
    if status:
        q = q.where(Application.status == status)
    else:
        q = q.where(col(Application.status).in_([SUBMITTED, ACCEPTED, SUPPLEMENT]))
    return list((await session.exec(q.order_by(col(Application.due_at).asc()).limit(200))).all())


async def _claim(session: AsyncSession, app: Application, allowed: Sequence[str], to: str) -> bool:
    """Move ``app`` to ``to`` only if it is still in one of ``allowed``: a compare-and-set in the
    database, so two concurrent requests (double taps, two reviewers) cannot both act. SQLite has no
    row locks; this works the same there and on PostgreSQL."""
    conn = await session.connection()
    result = await conn.execute(
        sa.update(Application)
        .where(col(Application.id) == app.id, col(Application.status).in_(list(allowed)))
        .values(status=to, updated_at=utcnow())
    )
    if result.rowcount != 1:
        await session.refresh(app)
        return False
    app.status = to
    return True


async def _transition(session: AsyncSession, app: Application, allowed: Sequence[str], to: str) -> None:
    if app.status not in allowed or not await _claim(session, app, allowed, to):
        state = STATUS_NAMES[app.status]
        raise InvalidTransition(f"申请当前为“{state}”状态，不能执行此操作", status=app.status)


async def _tell(session: AsyncSession, app: Application, status: str, note: str = "") -> None:
    await notify.send(
        session,
        account_id=app.applicant_id,
        template="gov.status_changed",
        params={"item": app.item_name, "number": app.number, "status": status, "note": note},
    )


async def accept(session: AsyncSession, *, app: Application, principal: Principal) -> Application:
    await _transition(session, app, [SUBMITTED], ACCEPTED)
    now = utcnow()
    app.accepted_at, app.reviewer_id, app.updated_at = now, principal.id, now
    session.add(app)
    await session.flush()
    await _event(session, app, kind="accepted", title="已受理", actor=principal, role="reviewer")
    await _tell(session, app, "已受理")
    return app


async def request_supplement(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str, materials: list[str]
) -> Application:
    item = await version_of(session, app)
    names = {m.name for m in item.materials}
    bad = [m for m in materials if m not in names]
    if bad:
        raise ValidationFailed(f"本事项没有这些材料：{'、'.join(bad)}")
    await _transition(session, app, [ACCEPTED], SUPPLEMENT)
    now = utcnow()
    app.pauses = [*app.pauses, [now.isoformat(), None, reason]]
    app.due_at, app.updated_at = None, now
    app.reviewer_id = app.reviewer_id or principal.id
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="supplement_requested",
        title="需要补正材料（暂停计时）",
        note=reason,
        actor=principal,
        role="reviewer",
        data={"materials": materials},
    )
    await notify.send(
        session,
        account_id=app.applicant_id,
        template="gov.supplement",
        params={"item": app.item_name, "number": app.number, "reason": reason},
    )
    return app


async def approve(
    session: AsyncSession, *, app: Application, principal: Principal, note: str | None
) -> Application:
    await _transition(session, app, [ACCEPTED], APPROVED)
    item = await version_of(session, app)
    now = utcnow()
    _record_decision(app, now)
    app.updated_at = now
    app.reviewer_id = app.reviewer_id or principal.id
    if item.result.ecert:
        applicant = await session.get(Account, app.applicant_id)
        holder = applicant.id_number if applicant else None
        if holder:
            cert = await get_datahub().issue_certificate(
                session,
                holder_id_number=holder,
                cert_type=ECERT_CODES[item.result.ecert],
                title=item.result.ecert,
                issuer=app.department,
                data={"application": app.number, "item": app.item_code},
                source_ref=app.id,
            )
            app.result_cert_no = cert.cert_no
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="approved",
        title=f"办结：{item.result.name}",
        note=note,
        actor=principal,
        role="reviewer",
        data={"cert_no": app.result_cert_no},
    )
    extra = "电子证照已存入您的证照夹。" if app.result_cert_no else ""
    if item.result.paper and app.delivery == "免费邮寄":
        await outbox.enqueue(session, "gov_services.post_result", application_id=app.id)
        extra += "纸质结果将免费邮寄给您。"
    elif item.result.paper and app.delivery == "窗口领取":
        extra += f"请到{item.where_to_go or app.department}领取纸质结果。"
    await _tell(session, app, "已办结", extra)
    return app


async def reject(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str
) -> Application:
    was = app.status
    await _transition(session, app, [SUBMITTED, ACCEPTED, SUPPLEMENT], REJECTED)
    now = utcnow()
    if was == SUPPLEMENT:
        _close_pause(app, now)
    _record_decision(app, now)
    app.decision_reason, app.updated_at = reason, now
    app.reviewer_id = app.reviewer_id or principal.id
    session.add(app)
    await session.flush()
    await _event(
        session, app, kind="rejected", title="不予办理", note=reason, actor=principal, role="reviewer"
    )
    await _tell(session, app, "不予办理", f"原因：{reason}")
    return app


async def post_result(session: AsyncSession, *, app_id: str) -> Waybill | None:
    """Create the waybill for a result to post (job; idempotent on the application)."""
    from columns.gov_services.postal import get_postal

    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.status != APPROVED or app.delivery != "免费邮寄":
        return None
    existing = (await session.exec(select(Waybill).where(Waybill.application_id == app.id))).first()
    if existing is not None:
        return existing
    receiver = address_of(app)
    if receiver is None:
        return None
    result = await get_postal().create_waybill(
        order_id=app.id,
        receiver=receiver,
        sender=get_config().postal_sender,
        goods=f"{app.item_name}办理结果",
    )
    wb = Waybill(application_id=app.id, tracking_no=result.tracking_no, fee_fen=result.fee_fen)
    session.add(wb)
    app.status, app.tracking_no, app.updated_at = POSTED, result.tracking_no, utcnow()
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        kind="posted",
        title="结果已免费寄出",
        note=f"邮件号 {result.tracking_no}",
        actor=None,
        role="system",
        data={"tracking_no": result.tracking_no},
    )
    await notify.send(
        session,
        account_id=app.applicant_id,
        template="gov.posted",
        params={"item": app.item_name, "tracking_no": result.tracking_no},
    )
    return wb


async def post_pending(session: AsyncSession, *, older_than: dt.timedelta = dt.timedelta(minutes=2)) -> int:
    """Results approved for posting whose job failed (carrier down): try again."""
    cutoff = utcnow() - older_than
    ids = (
        await session.exec(
            select(Application.id).where(
                Application.status == APPROVED,
                Application.delivery == "免费邮寄",
                col(Application.decided_at) < cutoff,
            )
        )
    ).all()
    posted = 0
    for app_id in ids:
        posted += (await post_result(session, app_id=app_id)) is not None
    return posted


async def track_waybills(session: AsyncSession, *, limit: int = 200) -> int:
    """Ask the carrier about parcels still on their way; mark delivered ones."""
    from columns.gov_services.postal import get_postal

    rows = (await session.exec(select(Waybill).where(col(Waybill.status) != "delivered").limit(limit))).all()
    done = 0
    for wb in rows:
        tracking = await get_postal().track(wb.tracking_no)
        if tracking.status == wb.status:
            continue
        wb.status = tracking.status
        if tracking.status == "delivered":
            wb.delivered_at = utcnow()
            app = await session.get(Application, wb.application_id)
            if app is not None and app.status == POSTED:
                app.status, app.updated_at = DELIVERED, utcnow()
                session.add(app)
                await _event(session, app, kind="delivered", title="结果已签收", actor=None, role="system")
            done += 1
        session.add(wb)
    await session.flush()
    return done


# ---------------------------------------------------------------- rating


async def rate(
    session: AsyncSession, *, app: Application, principal: Principal, score: int, text: str | None
) -> Rating:
    if app.status not in DECIDED_STATES:
        raise InvalidTransition("办结后才能评价")
    if (await session.exec(select(Rating).where(Rating.application_id == app.id))).first() is not None:
        raise AlreadyRated()
    r = Rating(
        application_id=app.id,
        item_code=app.item_code,
        department=app.department,
        rater_id=principal.id,
        score=score,
        text=text,
        follow_up="open" if score <= 2 else "none",
    )
    session.add(r)
    try:
        async with savepoint(session):
            await session.flush()
    except sa.exc.IntegrityError:
        raise AlreadyRated() from None
    await _event(
        session,
        app,
        kind="rated",
        title=f"评价：{score}星",
        note=text,
        actor=principal,
        role="resident",
        data={"score": score},
    )
    if r.follow_up == "open":
        await notify.send(
            session,
            account_id=app.applicant_id,
            template="gov.follow_up",
            params={"item": app.item_name, "department": app.department},
        )
    return r


async def answer_follow_up(
    session: AsyncSession, *, rating_id: str, principal: Principal, answer: str
) -> Rating:
    r = await session.get(Rating, rating_id, with_for_update=True)
    if r is None:
        raise ApplicationNotFound("未找到该评价")
    if principal.department != r.department:
        raise OutsideDepartment(department=r.department)
    if r.follow_up != "open":
        raise InvalidTransition("该评价无需回访或已回复")
    r.follow_up, r.answer, r.answered_by, r.answered_at = "answered", answer, principal.id, utcnow()
    session.add(r)
    await session.flush()
    app = await session.get(Application, r.application_id)
    if app is not None:
        await _event(
            session,
            app,
            kind="follow_up_answered",
            title="部门回访",
            note=answer,
            actor=principal,
            role="reviewer",
        )
        await notify.send(
            session,
            account_id=app.applicant_id,
            template="gov.follow_up_answered",
            params={"department": r.department, "answer": answer},
        )
    return r


async def rating_figures(session: AsyncSession, *, by: str) -> list[dict[str, Any]]:
    column = col(Rating.department) if by == "department" else col(Rating.item_code)
    rows = (
        await session.exec(
            select(  # type: ignore[call-overload]
                column,
                sa.func.count(),
                sa.func.avg(Rating.score),
                sa.func.sum(sa.case((col(Rating.score) <= 2, 1), else_=0)),
                sa.func.sum(sa.case((col(Rating.follow_up) == "open", 1), else_=0)),
            ).group_by(column)
        )
    ).all()
    return [
        {
            by: key,
            "count": int(n),
            "average": round(float(avg or 0), 2),
            "bad": int(bad or 0),
            "satisfaction": round(1 - int(bad or 0) / int(n), 4) if n else None,
            "open_follow_ups": int(open_ or 0),
        }
        for key, n, avg, bad, open_ in rows
    ]


async def timeline(session: AsyncSession, app: Application) -> list[Event]:
    return list(
        (
            await session.exec(
                select(Event).where(Event.application_id == app.id).order_by(col(Event.at), col(Event.id))
            )
        ).all()
    )


async def my_applications(session: AsyncSession, *, account_id: str, limit: int = 50) -> list[Application]:
    return list(
        (
            await session.exec(
                select(Application)
                .where(Application.applicant_id == account_id)
                .order_by(col(Application.created_at).desc())
                .limit(limit)
            )
        ).all()
    )


__all__ = ["APPROVED", "REJECTED"]
