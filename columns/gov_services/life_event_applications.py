"""A resident's life event (一件事): one draft, one consent screen, one set of materials, fanned
out on submission as one application per item (each in its department's queue with its own clock),
one combined timeline, and one delivery when the last result is in.

The life event is the parent (``BundleApplication``); its items' applications are ordinary
``Application`` rows with ``bundle_id`` set, reviewed, supervised and approved exactly as any other.
An item that needs another item's result (户口登记 needs the 出生医学证明) is created with the others
but filed only when that result is issued, with that certificate attached; if that item ends without
a result, the waiting one is marked ``not_filed``. Each decision of an item queues the
``gov_services.bundle_progress`` job (through the outbox, so it survives a lost message), which
files what can now be filed and, once every item has ended, completes the life event and delivers
once: one waybill for every paper result, one message to the resident.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import decrypt_str, encrypt_str, mask_id_number
from app_api.core.db import savepoint, session_scope, utcnow
from app_api.core.errors import AppError, IdentityLevelRequired, ValidationFailed
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from columns.gov_services import applications, life_events, messages
from columns.gov_services.catalogue import CONSENT_GROUPS, RECORD_FIELDS, CatalogueItem
from columns.gov_services.config import get_config
from columns.gov_services.errors import (
    BundleApplicationNotFound,
    BundleFieldsInvalid,
    DeliveryInvalid,
    InvalidTransition,
    MaterialsMissing,
)
from columns.gov_services.lifecycle import address_of, claim, record_event, set_address, set_form, version_of
from columns.gov_services.models import (
    APPROVED,
    AWAITING_PAYMENT,
    BUNDLE_COMPLETED,
    BUNDLE_DRAFT,
    BUNDLE_PROCESSING,
    DELIVERED,
    DRAFT,
    NOT_FILED,
    POSTED,
    Application,
    BundleApplication,
    BundleEvent,
    BundleUpload,
    Event,
    Upload,
)
from columns.gov_services.postal import get_postal
from columns.gov_services.prefill import fill_from_records
from columns.gov_services.storage import check_upload, display_name, get_storage

PROGRESS_TASK = "gov_services.bundle_progress"
# An item's application still on its way to a result.
UNDECIDED = (DRAFT, AWAITING_PAYMENT, "submitted", "accepted", "supplement")
WITH_RESULT = (APPROVED, POSTED, DELIVERED)


# ---------------------------------------------------------------- the parent's own data


def form_of(b: BundleApplication) -> dict[str, Any]:
    if b.form_enc is None:
        return {}
    result: dict[str, Any] = json.loads(decrypt_str(b.form_enc, aad=f"gov_bundle:{b.id}"))
    return result


def _set_form(b: BundleApplication, form: dict[str, Any]) -> None:
    b.form_enc = encrypt_str(json.dumps(form, ensure_ascii=False), aad=f"gov_bundle:{b.id}")


def bundle_address(b: BundleApplication) -> dict[str, str] | None:
    if b.address_enc is None:
        return None
    result: dict[str, str] = json.loads(decrypt_str(b.address_enc, aad=f"gov_bundle_addr:{b.id}"))
    return result


def form_view(b: BundleApplication, labels: dict[str, str]) -> dict[str, Any]:
    fields = []
    for key, value in form_of(b).items():
        shown = mask_id_number(value) if key.endswith("id_number") and isinstance(value, str) else value
        fields.append({"key": key, "label": labels.get(key) or RECORD_FIELDS.get(key, key), "value": shown})
    return {"fields": fields, "ecerts": b.ecerts, "consents": b.consents}


async def record_bundle_event(
    session: AsyncSession,
    b: BundleApplication,
    *,
    kind: str,
    title: str,
    actor: Principal | None,
    role: str,
    note: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        BundleEvent(
            bundle_application_id=b.id,
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
        action=f"gov_services.bundle_{kind}",
        actor_id=actor.id if actor else None,
        subject_type="gov_services_bundle_application",
        subject_id=b.id,
        data={"status": b.status, "bundle": b.bundle_code, **(data or {})},
    )


def _new_number() -> str:
    now = utcnow().astimezone(CHINA_TZ)
    return f"YJ{now:%Y%m%d}{secrets.randbelow(10**8):08d}"


# ---------------------------------------------------------------- the resident's steps


async def create(
    session: AsyncSession, *, principal: Principal, bundle_code: str, client_key: str
) -> tuple[BundleApplication, bool]:
    """A draft of the life event; the same client key gives back the same draft (or the submitted
    life event). Refused when the life event is unknown or one of its items cannot be applied for."""
    existing = (
        await session.exec(
            select(BundleApplication).where(
                BundleApplication.applicant_id == principal.id, BundleApplication.client_key == client_key
            )
        )
    ).first()
    if existing is not None:
        if existing.bundle_code != bundle_code:
            raise ValidationFailed("该请求编号已用于其他“一件事”的申请", client_key=client_key)
        return existing, False
    bundle = await life_events.get_bundle(session, bundle_code)
    items = await life_events.available_items(session, bundle)
    level = max(i.identity_level for i in items)
    if principal.identity_level < level:
        raise IdentityLevelRequired(level, principal.identity_level)
    for _attempt in range(5):
        b = BundleApplication(
            number=_new_number(),
            client_key=client_key,
            applicant_id=principal.id,
            bundle_code=bundle.code,
            bundle_name=bundle.name,
        )
        try:
            async with savepoint(session):
                session.add(b)
                await session.flush()
            break
        except sa.exc.IntegrityError:
            again = (
                await session.exec(
                    select(BundleApplication).where(
                        BundleApplication.applicant_id == principal.id,
                        BundleApplication.client_key == client_key,
                    )
                )
            ).first()
            if again is not None:
                return again, False
    else:
        raise InvalidTransition("申请编号生成失败，请重试")
    await record_bundle_event(
        session,
        b,
        kind="drafted",
        title=f"开始办理“{bundle.name}”",
        actor=principal,
        role="resident",
        data={"items": list(bundle.item_codes)},
    )
    return b, True


async def mine(session: AsyncSession, *, account_id: str, limit: int = 50) -> list[BundleApplication]:
    return list(
        (
            await session.exec(
                select(BundleApplication)
                .where(BundleApplication.applicant_id == account_id)
                .order_by(col(BundleApplication.created_at).desc(), col(BundleApplication.id))
                .limit(limit)
            )
        ).all()
    )


async def owned(
    session: AsyncSession, *, bundle_app_id: str, principal: Principal, for_update: bool = False
) -> BundleApplication:
    b = await session.get(BundleApplication, bundle_app_id, with_for_update=for_update)
    if b is None or b.applicant_id != principal.id:
        raise BundleApplicationNotFound()
    return b


def _draft(b: BundleApplication) -> None:
    if b.status != BUNDLE_DRAFT:
        raise InvalidTransition("“一件事”已提交，不能再修改", status=b.status)


async def _items(session: AsyncSession, b: BundleApplication) -> list[CatalogueItem]:
    return await life_events.available_items(session, await life_events.get_bundle(session, b.bundle_code))


async def prefill(
    session: AsyncSession, *, b: BundleApplication, principal: Principal, groups: list[str]
) -> BundleApplication:
    """One consent per record group for every item of the life event, then the combined form and
    the e-certificates filled from the data center once."""
    _draft(b)
    items = await _items(session, b)
    offered = life_events.record_groups(items)
    if not groups or any(g not in offered for g in groups):
        raise ValidationFailed("请选择本“一件事”可授权的信息类别", allowed=list(offered))
    wanted = set().union(*(life_events.wanted_fields(i) for i in items))
    materials = {m.name: m for i in items for m in i.materials}
    filled = await fill_from_records(
        session,
        principal=principal,
        consent_texts={g: life_events.consent_text(b.bundle_name, g, offered[g]) for g in groups},
        wanted=wanted,
        materials=list(materials.values()),
    )
    _set_form(b, {**form_of(b), **filled.form})
    b.consents = {**b.consents, **filled.consents}
    b.ecerts = {**b.ecerts, **filled.ecerts}
    b.updated_at = utcnow()
    session.add(b)
    await session.flush()
    await record_bundle_event(
        session,
        b,
        kind="prefilled",
        title="一次授权调取信息",
        actor=principal,
        role="resident",
        data={"groups": groups, "departments": sorted({d for g in groups for d in offered[g]})},
    )
    return b


async def fill(
    session: AsyncSession, *, b: BundleApplication, principal: Principal, fields: dict[str, str]
) -> BundleApplication:
    """Fields of the combined form the resident types (asked once for all items). Record fields come
    only from the data center."""
    _draft(b)
    records = [k for k in fields if k in RECORD_FIELDS or k.split(".", 1)[0] in CONSENT_GROUPS]
    if records:
        raise ValidationFailed(
            f"以下信息只能经授权从人口库、法人库或电子证照库调取：{'、'.join(records)}", fields=records
        )
    bundle = life_events.def_of(await life_events.get_bundle(session, b.bundle_code))
    items = await _items(session, b)
    known = {f.key for f in bundle.fields} | set().union(*(life_events.wanted_fields(i) for i in items))
    unknown = sorted(k for k in fields if k not in known)
    if unknown:
        raise ValidationFailed(f"本“一件事”没有这些填写项：{'、'.join(unknown)}", fields=unknown)
    form = form_of(b)
    form.update({k: v.strip() for k, v in fields.items()})
    _set_form(b, form)
    b.updated_at = utcnow()
    session.add(b)
    await session.flush()
    await record_bundle_event(
        session,
        b,
        kind="filled",
        title="填写信息",
        actor=principal,
        role="resident",
        data={"fields": sorted(fields)},
    )
    return b


async def uploads_of(session: AsyncSession, b: BundleApplication) -> list[BundleUpload]:
    return list(
        (
            await session.exec(
                select(BundleUpload)
                .where(BundleUpload.bundle_application_id == b.id)
                .order_by(col(BundleUpload.created_at), col(BundleUpload.id))
            )
        ).all()
    )


async def add_upload(
    session: AsyncSession,
    *,
    b: BundleApplication,
    principal: Principal,
    material: str,
    filename: str,
    content_type: str | None,
    data: bytes,
) -> BundleUpload:
    """A material uploaded once for every item of the life event that needs it."""
    import hashlib

    _draft(b)
    combined = life_events.combined_materials(await _items(session, b))
    names = [m.name for m in combined if m.from_resident or not m.required]
    if material not in names:
        raise ValidationFailed(f"本“一件事”没有需要上传的“{material}”材料", materials=names)
    kind = check_upload(data, declared_type=content_type, max_bytes=get_config().upload_max_bytes)
    up = BundleUpload(
        bundle_application_id=b.id,
        owner_id=principal.id,
        material=material,
        filename=display_name(filename, kind, fallback=material),
        kind=kind,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key="",
    )
    up.storage_key = f"bundle/{b.id}/{up.id}.{kind}"
    await get_storage().put(up.storage_key, data)
    session.add(up)
    await session.flush()
    used_by = next(m.items for m in combined if m.name == material)
    await record_bundle_event(
        session,
        b,
        kind="uploaded",
        title=f"上传材料：{material}",
        actor=principal,
        role="resident",
        data={"material": material, "kind": kind, "size": len(data), "items": used_by},
    )
    return up


def missing_materials(
    b: BundleApplication, items: list[CatalogueItem], form: dict[str, Any], uploaded: set[str]
) -> list[str]:
    """Materials the resident still owes (those another item of the life event issues are not)."""
    out: list[str] = []
    for item in items:
        waiting = life_events.waits_for(item, items)
        for m in item.materials:
            if not m.required or m.condition or m.name in waiting or m.name in out:
                continue
            if m.name in uploaded or m.name in b.ecerts:
                continue
            if m.fill_fields and not m.ecert and all(f in form for f in m.fill_fields):
                continue
            out.append(m.name)
    return out


def _clean_address(address: dict[str, str] | None) -> dict[str, str] | None:
    if not address or not all((address.get(k) or "").strip() for k in ("name", "phone", "address")):
        return None
    return {k: address[k].strip() for k in ("name", "phone", "address")}


async def submit(
    session: AsyncSession,
    *,
    bundle_app_id: str,
    principal: Principal,
    delivery: str | None,
    address: dict[str, str] | None,
) -> BundleApplication:
    """Fan the life event out: one application per item, each filed in its department's queue
    (or waiting for the result it needs). All or nothing: an item refusing its application (a
    condition not met) refuses the whole submission, and nothing is filed. Submitting again
    changes nothing."""
    b = await owned(session, bundle_app_id=bundle_app_id, principal=principal, for_update=True)
    if b.status != BUNDLE_DRAFT:
        return b
    bundle = await life_events.get_bundle(session, b.bundle_code)
    bdef = life_events.def_of(bundle)
    items = await life_events.available_items(session, bundle)
    level = max(i.identity_level for i in items)
    if principal.identity_level < level:
        raise IdentityLevelRequired(level, principal.identity_level)
    form = form_of(b)
    problems = {f.key: p for f in bdef.fields if (p := f.problem(form.get(f.key)))}
    if problems:
        raise BundleFieldsInvalid("；".join(problems.values()), problems=problems)
    uploads: dict[str, BundleUpload] = {u.material: u for u in await uploads_of(session, b)}
    missing = missing_materials(b, items, form, set(uploads))
    if missing:
        raise MaterialsMissing(f"还缺少：{'、'.join(missing)}", missing=missing)
    options = life_events.delivery_options(items)
    choice = delivery or options[0]
    if choice not in options:
        raise DeliveryInvalid(f"本“一件事”支持的送达方式：{'、'.join(options)}", allowed=options)
    per_item = {i.code: life_events.child_delivery(i, choice) for i in items}
    clean = _clean_address(address)
    if any(d == life_events.POST for d in per_item.values()) and clean is None:
        raise DeliveryInvalid("“一件事”的办理结果需要邮寄，请填写收件人、电话和地址")
    conn = await session.connection()
    claimed = await conn.execute(
        sa.update(BundleApplication)
        .where(col(BundleApplication.id) == b.id, col(BundleApplication.status) == BUNDLE_DRAFT)
        .values(status=BUNDLE_PROCESSING, updated_at=utcnow())
    )
    if claimed.rowcount != 1:
        await session.refresh(b)
        return b
    now = utcnow()
    b.status, b.delivery, b.submitted_at, b.updated_at = BUNDLE_PROCESSING, choice, now, now
    if clean is not None:
        b.address_enc = encrypt_str(json.dumps(clean, ensure_ascii=False), aad=f"gov_bundle_addr:{b.id}")
    session.add(b)
    own_keys = {f.key for f in bdef.fields}
    kids: list[tuple[CatalogueItem, Application, dict[str, str]]] = []
    for item in items:
        kid, _ = await applications.create_application(
            session, principal=principal, item_code=item.code, client_key=f"bundle:{b.id}:{item.code}"
        )
        waiting = life_events.waits_for(item, items)
        wanted = life_events.wanted_fields(item) | own_keys
        kid.bundle_id = b.id
        kid.delivery = per_item[item.code]
        kid.consents = dict(b.consents)
        kid.ecerts = {
            m.name: b.ecerts[m.name] for m in item.materials if m.name in b.ecerts and m.name not in waiting
        }
        set_form(kid, {k: v for k, v in form.items() if k in wanted})
        if kid.delivery == life_events.POST and clean is not None:
            set_address(kid, clean)
        session.add(kid)
        for m in item.materials:
            up = uploads.get(m.name)
            if up is not None and m.name not in waiting:
                session.add(
                    Upload(
                        application_id=kid.id,
                        owner_id=up.owner_id,
                        material=m.name,
                        filename=up.filename,
                        kind=up.kind,
                        size=up.size,
                        sha256=up.sha256,
                        storage_key=up.storage_key,
                    )
                )
        kids.append((item, kid, waiting))
    await session.flush()
    await record_bundle_event(
        session,
        b,
        kind="submitted",
        title=f"提交“{b.bundle_name}”，分送{len({i.department for i in items})}个部门办理",
        actor=principal,
        role="resident",
        data={"applications": {k.item_code: k.number for _, k, _ in kids}, "delivery": choice},
    )
    for item, kid, waiting in kids:
        if waiting:
            await _note_waiting(session, kid, waiting, {i.code: i for i in items})
            continue
        try:
            await applications.submit(
                session, app_id=kid.id, principal=principal, delivery=kid.delivery, address=clean
            )
        except AppError as exc:
            exc.extra.setdefault("item_code", item.code)
            exc.detail = f"{item.name}：{exc.detail}"
            raise
    # One message for the whole life event (its items' own submitted/accepted/approved are quiet).
    await notify.send(
        session,
        account_id=b.applicant_id,
        template=messages.BUNDLE_SUBMITTED,
        params={
            "bundle": b.bundle_name,
            "number": b.number,
            "count": len(items),
            "departments": len({i.department for i in items}),
        },
    )
    return b


async def _note_waiting(
    session: AsyncSession, kid: Application, waiting: dict[str, str], items: dict[str, CatalogueItem]
) -> None:
    names = sorted({items[c].name for c in waiting.values()})
    await record_event(
        session,
        kid,
        kind="waiting",
        title="等待前序事项办结后自动提交",
        note=f"需要“{'、'.join(names)}”的办理结果：{'、'.join(waiting)}",
        actor=None,
        role="system",
        data={"waits_for": sorted(set(waiting.values())), "materials": sorted(waiting)},
    )


# ---------------------------------------------------------------- progress and the one delivery


async def children(session: AsyncSession, b: BundleApplication) -> list[Application]:
    return list(
        (
            await session.exec(
                select(Application)
                .where(Application.bundle_id == b.id)
                .order_by(col(Application.created_at), col(Application.id))
            )
        ).all()
    )


async def _principal_of(session: AsyncSession, account_id: str) -> Principal:
    account = await session.get(Account, account_id)
    assert account is not None
    return Principal(id=account.id, roles=tuple(account.roles), identity_level=account.identity_level)


async def _not_filed(session: AsyncSession, kid: Application, reason: str) -> None:
    if await claim(session, kid, [DRAFT], NOT_FILED):
        kid.decision_reason, kid.updated_at = reason[:500], utcnow()
        session.add(kid)
        await session.flush()
        await record_event(
            session, kid, kind="not_filed", title="未提交", note=reason, actor=None, role="system"
        )


async def _file_waiting(
    session: AsyncSession, b: BundleApplication, kids: list[Application], items: dict[str, CatalogueItem]
) -> bool:
    """File each waiting application whose needed results are all issued; give up on those whose
    needed item ended without one. True if anything changed."""
    by_code = {k.item_code: k for k in kids}
    changed = False
    for kid in kids:
        if kid.status != DRAFT:
            continue
        item = items[kid.item_code]
        waiting = life_events.waits_for(item, list(items.values()))
        producers = {code: by_code[code] for code in set(waiting.values())}
        ended = [p for p in producers.values() if p.status not in UNDECIDED and not _has_result(p)]
        if ended:
            names = "、".join(p.item_name for p in ended)
            await _not_filed(session, kid, f"“{names}”未取得办理结果，本事项未提交")
            changed = True
            continue
        if not all(_has_result(p) for p in producers.values()):
            continue
        kid.ecerts = {
            **kid.ecerts,
            **{
                material: {
                    "cert_no": producers[code].result_cert_no,
                    "title": items[code].result.ecert,
                    "issuer": producers[code].department,
                    "application": producers[code].number,
                }
                for material, code in waiting.items()
            },
        }
        session.add(kid)
        await session.flush()
        principal = await _principal_of(session, b.applicant_id)
        try:
            async with savepoint(session):
                await applications.submit(
                    session,
                    app_id=kid.id,
                    principal=principal,
                    delivery=kid.delivery,
                    address=address_of(kid),
                    actor_role="system",
                )
        except AppError as exc:
            await session.refresh(kid)
            await _not_filed(session, kid, f"自动提交未成功：{exc.detail}")
        changed = True
    return changed


def _has_result(app: Application) -> bool:
    return app.status in WITH_RESULT and app.result_cert_no is not None


async def progress(bundle_app_id: str) -> str:
    """The job behind every decision of a life event's item (idempotent, safe to run twice or
    concurrently): file what can now be filed; complete and deliver once when all have ended."""
    async with session_scope() as s:
        b = await s.get(BundleApplication, bundle_app_id, with_for_update=True)
        if b is None or b.status != BUNDLE_PROCESSING:
            return "nothing"
        kids = await children(s, b)
        items = {k.item_code: await version_of(s, k) for k in kids}
        for _round in range(len(kids)):
            if not await _file_waiting(s, b, kids, items):
                break
        if any(k.status in UNDECIDED for k in kids):
            return "waiting"
        return await _complete(s, b, kids, items)


async def _complete(
    session: AsyncSession, b: BundleApplication, kids: list[Application], items: dict[str, CatalogueItem]
) -> str:
    conn = await session.connection()
    now = utcnow()
    claimed = await conn.execute(
        sa.update(BundleApplication)
        .where(col(BundleApplication.id) == b.id, col(BundleApplication.status) == BUNDLE_PROCESSING)
        .values(status=BUNDLE_COMPLETED, completed_at=now, updated_at=now)
    )
    if claimed.rowcount != 1:
        return "already"
    b.status, b.completed_at, b.updated_at = BUNDLE_COMPLETED, now, now
    to_post = [
        k
        for k in kids
        if k.status == APPROVED and k.delivery == life_events.POST and items[k.item_code].result.paper
    ]
    receiver = bundle_address(b)
    if to_post and receiver is not None:
        # Idempotent at the carrier on the life event's id: a retried job never ships twice.
        waybill = await get_postal().create_waybill(
            order_id=b.id,
            receiver=receiver,
            sender=get_config().postal_sender,
            goods=f"{b.bundle_name}：{'、'.join(items[k.item_code].result.name for k in to_post)}",
        )
        b.tracking_no = waybill.tracking_no
        for k in to_post:
            k.status, k.tracking_no, k.updated_at = POSTED, waybill.tracking_no, now
            session.add(k)
            await record_event(
                session,
                k,
                kind="posted",
                title=f"结果随“{b.bundle_name}”合并寄出",
                note=f"邮件号 {waybill.tracking_no}",
                actor=None,
                role="system",
                data={"tracking_no": waybill.tracking_no, "bundle": b.number},
            )
    session.add(b)
    await session.flush()
    done = [k for k in kids if k.status in WITH_RESULT]
    ended = [k for k in kids if k.status not in WITH_RESULT]
    parts = [f"{len(done)}项已办结"]
    if ended:
        parts.append(f"{len(ended)}项未办结（{'、'.join(k.item_name for k in ended)}）")
    if b.tracking_no:
        parts.append(f"纸质结果已合并免费寄出，邮件号{b.tracking_no}")
    if any(k.result_cert_no for k in done):
        parts.append("电子证照已存入您的证照夹")
    note = "，".join(parts) + "。"
    await record_bundle_event(
        session,
        b,
        kind="completed",
        title="全部办结，结果一次送达",
        note=note,
        actor=None,
        role="system",
        data={
            "tracking_no": b.tracking_no,
            "results": [k.item_code for k in done],
            "ended": {k.item_code: k.status for k in ended},
        },
    )
    await notify.send(
        session,
        account_id=b.applicant_id,
        template=messages.STATUS_CHANGED,
        params={"item": b.bundle_name, "number": b.number, "status": "已全部办结", "note": note},
    )
    return "completed"


async def track(session: AsyncSession, *, limit: int = 200) -> int:
    """Ask the carrier about life events' parcels still on their way; mark delivered ones."""
    from columns.gov_services.errors import PostalError

    rows = (
        await session.exec(
            select(BundleApplication)
            .where(
                col(BundleApplication.tracking_no).is_not(None), col(BundleApplication.delivered_at).is_(None)
            )
            .limit(limit)
        )
    ).all()
    done = 0
    for b in rows:
        assert b.tracking_no is not None
        try:
            tracking = await get_postal().track(b.tracking_no)
        except PostalError:
            continue
        if tracking.status != "delivered":
            continue
        now = utcnow()
        b.delivered_at, b.updated_at = now, now
        session.add(b)
        for k in await children(session, b):
            if k.status == POSTED and k.tracking_no == b.tracking_no:
                k.status, k.updated_at = DELIVERED, now
                session.add(k)
                await record_event(
                    session, k, kind="delivered", title="结果已签收", actor=None, role="system"
                )
        await record_bundle_event(
            session,
            b,
            kind="delivered",
            title="结果已签收",
            actor=None,
            role="system",
            data={"tracking_no": b.tracking_no},
        )
        done += 1
    await session.flush()
    return done


async def stalled(*, limit: int = 200) -> int:
    """The sweep behind the progress job: life events still processing whose items have all ended
    (their job's retries ran out, or it was lost) are completed now."""
    async with session_scope() as s:
        ids = list(
            (
                await s.exec(
                    select(BundleApplication.id)
                    .where(BundleApplication.status == BUNDLE_PROCESSING)
                    .where(
                        ~select(Application.id)
                        .where(
                            Application.bundle_id == BundleApplication.id,
                            col(Application.status).in_([s_ for s_ in UNDECIDED if s_ != DRAFT]),
                        )
                        .exists()
                    )
                    .limit(limit)
                )
            ).all()
        )
    n = 0
    for bid in ids:
        n += (await progress(bid)) == "completed"
    return n


# ---------------------------------------------------------------- the resident's combined view


async def combined_timeline(
    session: AsyncSession, b: BundleApplication, kids: list[Application]
) -> list[dict[str, Any]]:
    """The life event's own entries and its items' timelines, in time order, each item's entry
    naming its item and department."""
    out: list[dict[str, Any]] = [
        {"at": e.at, "kind": e.kind, "title": e.title, "note": e.note, "actor_role": e.actor_role}
        for e in (
            await session.exec(
                select(BundleEvent)
                .where(BundleEvent.bundle_application_id == b.id)
                .order_by(col(BundleEvent.at), col(BundleEvent.id))
            )
        ).all()
    ]
    by_id = {k.id: k for k in kids}
    if by_id:
        events = (
            await session.exec(
                select(Event)
                .where(col(Event.application_id).in_(list(by_id)))
                .order_by(col(Event.at), col(Event.id))
            )
        ).all()
        for e in events:
            k = by_id[e.application_id]
            out.append(
                {
                    "at": e.at,
                    "kind": e.kind,
                    "title": e.title,
                    "note": e.note,
                    "actor_role": e.actor_role,
                    "item_code": k.item_code,
                    "item_name": k.item_name,
                    "department": k.department,
                    "application_number": k.number,
                }
            )
    out.sort(key=lambda e: e["at"])
    return out
