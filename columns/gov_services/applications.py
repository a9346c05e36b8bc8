"""A resident's applications: drafts under the item's current version, materials, submission,
and the supplement that restarts the clock. Services take the session and keyword-only arguments,
raise domain errors, and only ``flush()``: the caller commits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging, write_batch
from app_api.core.clock import CHINA_TZ
from app_api.core.db import built, model_row, new_id, utcnow
from app_api.core.errors import AppError, IdentityLevelRequired, ValidationFailed
from app_api.platform import audit, notify
from app_api.platform.accounts.principal import Principal
from columns.gov_services import eligibility, fee_payments, instant, lifecycle, messages, workdays
from columns.gov_services.catalogue import CONSENT_GROUPS, RECORD_FIELDS, CatalogueItem
from columns.gov_services.catalogue_store import ITEM_FOR, current_hint, get_item, get_item_for
from columns.gov_services.config import get_config
from columns.gov_services.errors import (
    ApplicationNotFound,
    ConditionsNotMet,
    DeliveryInvalid,
    InvalidTransition,
    ItemNotFound,
    MaterialsMissing,
)
from columns.gov_services.lifecycle import (
    bundle_changed,
    claim,
    close_pause,
    form_of,
    pauses_of,
    record_event,
    set_address,
    set_form,
    started_at,
    transition,
    version_of,
)
from columns.gov_services.models import (
    ACCEPTED,
    AWAITING_PAYMENT,
    DRAFT,
    SUBMITTED,
    SUPPLEMENT,
    WITHDRAWN,
    Application,
    Event,
    Item,
    Upload,
)
from columns.gov_services.prefill import fill_from_records, prefill_preview
from columns.gov_services.rules import Eligibility, record_fields
from columns.gov_services.storage import check_upload, display_name, get_storage

# States the resident may withdraw from (撤回): anything not decided yet.
WITHDRAWABLE = (AWAITING_PAYMENT, SUBMITTED, ACCEPTED, SUPPLEMENT)

# Steps outside the department's review stage: the resident's own, acceptance, delivery.
NON_REVIEW_STEPS = ("申请", "预约", "报名", "受理", "送达")


def _new_number() -> str:
    now = utcnow().astimezone(CHINA_TZ)
    return f"{now:%Y%m%d}{secrets.randbelow(10**8):08d}"


async def _existing(session: AsyncSession, *, principal: Principal, client_key: str) -> Application | None:
    return (
        await session.exec(
            select(Application).where(
                Application.applicant_id == principal.id, Application.client_key == client_key
            )
        )
    ).first()


def _same_item(app: Application, item_code: str, client_key: str) -> Application:
    if app.item_code != item_code:
        raise ValidationFailed("该请求编号已用于其他事项的申请", client_key=client_key)
    return app


def _draft_insert() -> sa.TextClause:
    """INSERT of a draft that does nothing on any conflict (the client key, or the application
    number), the same SQL on PostgreSQL and SQLite. Written as text with typed parameters: the
    dialects' ``insert().on_conflict_do_nothing()`` is compiled again on every execution (it has no
    cache key); this is compiled once."""
    table: sa.Table = Application.__table__  # type: ignore[attr-defined]
    quoted = ", ".join('"' + c.name + '"' for c in table.c)
    params = ", ".join(":" + c.name for c in table.c)
    sql = f"INSERT INTO {table.name} ({quoted}) VALUES ({params}) ON CONFLICT DO NOTHING"
    return sa.text(sql).bindparams(*(sa.bindparam(c.name, type_=c.type) for c in table.c))


_DRAFT_INSERT = _draft_insert()


def _persistent_draft(session: AsyncSession, row: dict[str, Any], given: set[str]) -> Application:
    """The inserted draft as a persistent object of the session (``built``: its fifty-odd fields
    set at once, no history), nothing read back."""
    draft = built(Application, row, given)
    make_transient_to_detached(draft)
    session.add(draft)
    return draft


# Built once: the engine caches its compiled form (no statement construction per submission).
_EVENTS_TABLE: sa.Table = Event.__table__  # type: ignore[attr-defined]
_EVENTS_INSERT = sa.insert(_EVENTS_TABLE)


async def _timeline_entry(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    app: Application,
    *,
    kind: str,
    title: str,
    actor: Principal | None,
    role: str,
    data: dict[str, Any] | None = None,
) -> None:
    """``lifecycle.record_event`` on the submission's hot path: the same timeline row, kept as a
    plain dict in ``rows`` (written with the others by ``_write_timeline``, one INSERT), and the
    same audit record, queued now (the application's status as it is at this step)."""
    actor_id = actor.id if actor else None
    row: dict[str, Any] = {
        "id": new_id(),
        "application_id": app.id,
        "kind": kind,
        "title": title,
        "note": None,
        "actor_id": actor_id,
        "actor_role": role,
        "data": data or {},
        "at": utcnow(),
    }
    rows.append(row)
    # The one-tap endpoint answers with the timeline as written, without reading it back.
    kept = session.sync_session.info.get(lifecycle._KEPT)
    if kept is not None:
        kept.append(Event(**row))
    await audit.record(
        session,
        action=f"gov_services.application_{kind}",
        actor_id=actor_id,
        subject_type="gov_services_application",
        subject_id=app.id,
        data={"status": app.status, "item": app.item_code, **(data or {})},
    )


async def _write_timeline(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """The timeline rows kept so far, in one INSERT (then forgotten)."""
    if rows:
        if not write_batch.queue(session, _EVENTS_TABLE, list(rows)):
            conn = await session.connection()
            await conn.execute(_EVENTS_INSERT, rows)
        rows.clear()


def _draft_given(
    principal: Principal, item: CatalogueItem, version_id: str, version: int, client_key: str
) -> dict[str, Any]:
    """The draft's own fields (every other at its default), with a new application number."""
    if principal.identity_level < item.identity_level:
        raise IdentityLevelRequired(item.identity_level, principal.identity_level)
    accept_step = next((s.days for s in item.steps if s.name == "受理"), 1)
    return {
        "number": _new_number(),
        "client_key": client_key,
        "applicant_id": principal.id,
        "agent_id": None,
        "item_code": item.code,
        "item_version_id": version_id,
        "item_version": version,
        "item_name": item.name,
        "department": item.department,
        "limit_days": item.promised_days,
        "accept_limit_days": max(accept_step, 1),
        "review_limit_days": sum(s.days for s in item.steps if s.name not in NON_REVIEW_STEPS),
    }


async def _insert_draft(
    session: AsyncSession, *, principal: Principal, item_row: Item, item: CatalogueItem, client_key: str
) -> tuple[Application, bool]:
    """The draft in one INSERT that does nothing on a conflict (no SAVEPOINT, no read first); the
    same client key gives back its application (``False``): a concurrent request with the key waits
    for the other's commit, then finds its row."""
    conn = await session.connection()
    for _attempt in range(5):
        given = _draft_given(principal, item, item_row.current_version_id, item_row.version, client_key)
        row = model_row(Application, given)
        inserted = await conn.execute(_DRAFT_INSERT, row)
        if inserted.rowcount == 1:
            # The row is as built here: the object joins the session as persistent, nothing read back.
            return _persistent_draft(session, row, set(given)), True
        # Either the client key is taken (give its application back) or the random application
        # number collided with another of the day's numbers (draw again).
        again = await _existing(session, principal=principal, client_key=client_key)
        if again is not None:
            return _same_item(again, item.code, client_key), False
    raise InvalidTransition("申请编号生成失败，请重试")


def _drafting() -> Any:
    """``ITEM_FOR`` with the draft's INSERT as a data-modifying CTE and a last column ``drafted``
    (1 when it inserted): PostgreSQL only. The INSERT happens only if the item is active and its
    current version is the one the draft was built from (``d_item_version_id``); it does nothing on
    a conflict, as ``_DRAFT_INSERT``. Written as text with each parameter cast to its column's type
    (in INSERT ... SELECT the columns do not type the parameters): compiled once."""
    from sqlalchemy.dialects import postgresql

    table: sa.Table = Application.__table__  # type: ignore[attr-defined]
    items: sa.Table = Item.__table__  # type: ignore[attr-defined]
    # SQLAlchemy's dialect classes are untyped.
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]
    quoted = ", ".join('"' + c.name + '"' for c in table.c)
    values = ", ".join(f"CAST(:d_{c.name} AS {c.type.compile(dialect=pg)})" for c in table.c)
    sql = (
        f"INSERT INTO {table.name} ({quoted}) SELECT {values} WHERE EXISTS (SELECT 1 FROM {items.name} "
        f"WHERE {items.c.code.name} = :d_item_code AND {items.c.active.name} "
        f"AND {items.c.current_version_id.name} = :d_item_version_id) ON CONFLICT DO NOTHING RETURNING id"
    )
    draft = (
        sa.text(sql)
        .bindparams(*(sa.bindparam(f"d_{c.name}", type_=c.type) for c in table.c))
        .columns(sa.column("id", sa.String))
        .cte("draft")
    )
    drafted = sa.select(sa.func.count()).select_from(draft).scalar_subquery().label("drafted")
    return ITEM_FOR.add_columns(drafted).add_cte(draft)


_ITEM_FOR_DRAFTING = _drafting()


async def _or_existing(
    session: AsyncSession, error: ItemNotFound, *, principal: Principal, item_code: str, client_key: str
) -> Application:
    """The application the client key already gave, when its item has been withdrawn from the
    catalogue since; else the item is not found."""
    again = await _existing(session, principal=principal, client_key=client_key)
    if again is None:
        raise error
    return _same_item(again, item_code, client_key)


async def create_application(
    session: AsyncSession, *, principal: Principal, item_code: str, client_key: str
) -> tuple[Application, bool]:
    """A draft under the item's current version; the same client key gives back the same draft."""
    try:
        item_row, item = await get_item(session, code=item_code)
    except ItemNotFound as e:
        return await _or_existing(
            session, e, principal=principal, item_code=item_code, client_key=client_key
        ), False
    app, created = await _insert_draft(
        session, principal=principal, item_row=item_row, item=item, client_key=client_key
    )
    if created:
        await record_event(
            session, app, kind="drafted", title="创建申请草稿", actor=principal, role="resident"
        )
    return app, created


def not_left_to_bundle(app: Application) -> None:
    """A life event's application still waiting for another item's result is filed by the life
    event with that result, never by hand (with an older certificate from the wallet)."""
    if app.bundle_id is not None and app.status == DRAFT:
        raise InvalidTransition(
            "该申请属于“一件事”，将在所需的前序事项办结后由系统自动提交", bundle_id=app.bundle_id
        )


async def owned_application(session: AsyncSession, *, app_id: str, principal: Principal) -> Application:
    app = await session.get(Application, app_id)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    return app


async def my_applications(session: AsyncSession, *, account_id: str, limit: int = 50) -> list[Application]:
    return (await my_applications_page(session, account_id=account_id, cursor=None, limit=limit))[0]


async def my_applications_page(
    session: AsyncSession, *, account_id: str, cursor: str | None, limit: int
) -> tuple[list[Application], str | None]:
    """The resident's applications newest first, after ``cursor``, and the next page's cursor."""
    q = paging.after(
        select(Application).where(Application.applicant_id == account_id),
        at_column=col(Application.created_at),
        id_column=col(Application.id),
        cursor=cursor,
        limit=limit,
    )
    return paging.page((await session.exec(q)).all(), limit=limit, key=lambda a: (a.created_at, a.id))


async def uploads_of(session: AsyncSession, app: Application) -> list[Upload]:
    return list((await session.exec(select(Upload).where(Upload.application_id == app.id))).all())


async def add_upload(
    session: AsyncSession,
    *,
    app: Application,
    principal: Principal,
    material: str,
    filename: str,
    content_type: str | None,
    data: bytes,
    on_behalf: dict[str, str] | None = None,
) -> Upload:
    """A material checked by content and stored encrypted. ``on_behalf`` (agent, station and mandate
    ids) when an agent uploads it for the resident: the timeline says so."""
    if app.status not in (DRAFT, SUPPLEMENT):
        raise InvalidTransition("申请已提交，不能再上传材料")
    item = await version_of(session, app)
    if material not in {m.name for m in item.materials}:
        raise ValidationFailed(
            f"本事项没有名为“{material}”的材料", materials=[m.name for m in item.materials]
        )
    kind = check_upload(data, declared_type=content_type, max_bytes=get_config().upload_max_bytes)
    upload = Upload(
        application_id=app.id,
        owner_id=principal.id,
        material=material,
        filename=display_name(filename, kind, fallback=material),
        kind=kind,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        storage_key="",
    )
    upload.storage_key = f"{app.id}/{upload.id}.{kind}"
    await get_storage().put(upload.storage_key, data)
    session.add(upload)
    await session.flush()
    await record_event(
        session,
        app,
        kind="uploaded",
        title=f"上传材料：{material}",
        actor=None if on_behalf else principal,
        role="agent" if on_behalf else "resident",
        data={"material": material, "kind": kind, "size": len(data), **(on_behalf or {})},
    )
    return upload


async def _uploaded_materials(session: AsyncSession, app: Application) -> set[str]:
    return set((await session.exec(select(Upload.material).where(Upload.application_id == app.id))).all())


async def missing_materials(session: AsyncSession, app: Application, item: CatalogueItem) -> list[str]:
    return _missing(app, item, form_of(app), await _uploaded_materials(session, app))


def missing_of(app: Application, item: CatalogueItem, uploaded: set[str]) -> list[str]:
    """The required materials still missing, given the uploaded ones (already read)."""
    return _missing(app, item, form_of(app), uploaded)


def _missing(app: Application, item: CatalogueItem, form: dict[str, Any], uploaded: set[str]) -> list[str]:
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
    """Submit a draft. Submitting an already submitted application changes nothing (idempotent).
    Its append-only rows (timeline, message, job, audit) are written together at the commit."""
    write_batch.defer(session)
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    if app.status != DRAFT:
        return app
    item = await version_of(session, app)
    if principal.identity_level < item.identity_level:
        raise IdentityLevelRequired(item.identity_level, principal.identity_level)
    choice = _check_delivery(item, delivery, address)
    form = form_of(app)
    uploaded = await _uploaded_materials(session, app)
    missing = _missing(app, item, form, uploaded)
    if missing:
        raise MaterialsMissing(f"还缺少：{'、'.join(missing)}", missing=missing)
    checked = await eligibility.for_application(session, app=app, item=item)
    if checked.blocking:
        raise _not_met(checked)
    fee = fee_payments.quote(item, form)
    pay_first = fee.charge_at == "submit"
    if not await claim(session, app, [DRAFT], AWAITING_PAYMENT if pay_first else SUBMITTED):
        return app  # a concurrent submit of the same draft won; same outcome
    return await _filed(
        session,
        app=app,
        item=item,
        principal=principal,
        actor_role=actor_role,
        choice=choice,
        address=address,
        checked=checked,
        fee=fee,
        form=form,
        uploaded=uploaded,
    )


def _not_met(checked: Eligibility) -> ConditionsNotMet:
    reasons = [f"{r.explain}：{r.reason}" for r in checked.blocking]
    return ConditionsNotMet(
        "；".join(reasons), reasons=reasons, conditions=[asdict(r) for r in checked.results]
    )


async def _filed(
    session: AsyncSession,
    *,
    app: Application,
    item: CatalogueItem,
    principal: Principal,
    actor_role: str,
    choice: str,
    address: dict[str, str] | None,
    checked: Eligibility,
    fee: fee_payments.Quote,
    form: dict[str, Any],
    uploaded: set[str],
    timeline: list[dict[str, Any]] | None = None,
) -> Application:
    """The application, already moved out of its draft, waits for its fee or reaches its department.
    ``timeline``: entries kept by ``_timeline_entry`` and not written yet."""
    app.delivery = choice
    if choice == "免费邮寄" and address:
        clean = {k: address[k].strip() for k in ("name", "phone", "address")}
        set_address(app, clean)
    app.rule_results = checked.record()
    app.fee_fen, app.fee_charge_at = fee.amount_fen, fee.charge_at
    if fee.charge_at == "submit":
        await _write_timeline(session, timeline or [])
        await fee_payments.await_payment(session, app, stage="submit", actor=principal, role=actor_role)
        return app
    return await proceed_submitted(
        session,
        app=app,
        actor=principal,
        role=actor_role,
        item=item,
        checked=checked,
        form=form,
        uploaded=uploaded,
        timeline=timeline,
    )


async def one_tap(
    session: AsyncSession,
    *,
    principal: Principal,
    item_code: str,
    client_key: str,
    groups: list[str],
    delivery: str | None,
    address: dict[str, str] | None,
) -> tuple[Application, bool]:
    """One-tap application (一键申报) in one unit of work: the draft, the consent per record group
    and the reads it allows, the materials and conditions check, and the submission.

    An item whose materials the records cannot all supply, or whose hard conditions the records show
    unmet, stays a draft (returned with what is missing and the conditions' outcome) for the resident
    to complete step by step. The same client key gives back its application (``False``), unchanged.

    The draft is inserted by this transaction, so no other request can see it until the commit:
    its move to ``submitted`` needs no compare-and-set, and is written in the same UPDATE as the
    prefilled form. Three statements in all on PostgreSQL (``tests/columns/gov_services/
    test_submit_statements.py`` guards the count). Its append-only rows (consents, access log,
    timeline, message, job, audit) are written together at the commit (``write_batch``)."""
    write_batch.defer(session)
    # On PostgreSQL, with the item's current version known to this process, the draft is inserted
    # by the statement that reads the item (if that version is still current): checked and built
    # from it first. Any doubt (no hint, a check failing on it) takes the two-statement way, which
    # checks against what is read.
    drafting = await _draft_from_hint(
        session,
        principal=principal,
        item_code=item_code,
        client_key=client_key,
        groups=groups,
        delivery=delivery,
        address=address,
    )
    try:
        # The account read with the item: its ID number for the reads below, its birth date for the
        # conditions (the session finds it while it stays referenced here).
        item_row, item, account, drafted = await get_item_for(
            session,
            code=item_code,
            account_id=principal.id,
            also=_ITEM_FOR_DRAFTING if drafting else None,
            params={f"d_{k}": v for k, v in drafting[1].items()} if drafting else None,
        )
    except ItemNotFound as e:
        return await _or_existing(
            session, e, principal=principal, item_code=item_code, client_key=client_key
        ), False
    offered = {p["group"]: p for p in prefill_preview(item)}
    if not groups or any(g not in offered for g in groups):
        raise ValidationFailed("请选择本事项可授权的信息类别", allowed=list(offered))
    choice = _check_delivery(item, delivery, address)
    if drafting and drafted[0]:
        app, created = _persistent_draft(session, drafting[1], drafting[0]), True
    elif drafting and item_row.current_version_id == drafting[1]["item_version_id"]:
        # The version was current, so the INSERT met a conflict: the client key's application, or
        # (if there is none) a taken application number, drawn again below.
        again = await _existing(session, principal=principal, client_key=client_key)
        if again is not None:
            return _same_item(again, item.code, client_key), False
        app, created = await _insert_draft(
            session, principal=principal, item_row=item_row, item=item, client_key=client_key
        )
    else:
        app, created = await _insert_draft(
            session, principal=principal, item_row=item_row, item=item, client_key=client_key
        )
    if not created:
        return app, False
    # Its prefilled form and submission are written with the queued rows at the commit.
    write_batch.update_at_commit(session, app)
    filled = await fill_from_records(
        session,
        principal=principal,
        account=account,
        consent_texts={g: offered[g]["consent_text"] for g in groups},
        wanted={f for m in item.materials for f in m.fill_fields} | record_fields(item.rules),
        materials=list(item.materials),
    )
    set_form(app, filled.form)
    app.consents, app.ecerts = filled.consents, filled.ecerts
    app.updated_at = utcnow()
    session.add(app)
    timeline: list[dict[str, Any]] = []
    await _timeline_entry(
        session, timeline, app, kind="drafted", title="创建申请草稿", actor=principal, role="resident"
    )
    await _timeline_entry(
        session,
        timeline,
        app,
        kind="prefilled",
        title="授权调取信息",
        actor=principal,
        role="resident",
        data={"groups": groups},
    )
    form = form_of(app)
    # Nothing can have been uploaded to a draft this transaction has just created.
    missing = _missing(app, item, form, set())
    checked = await eligibility.for_application(session, app=app, item=item)
    fee = fee_payments.quote(item, form) if not missing and not checked.blocking else None
    if fee is None:
        app.rule_results = checked.record()
        await _write_timeline(session, timeline)
        return app, True
    app.status = AWAITING_PAYMENT if fee.charge_at == "submit" else SUBMITTED
    return await _filed(
        session,
        app=app,
        item=item,
        principal=principal,
        actor_role="resident",
        choice=choice,
        address=address,
        checked=checked,
        fee=fee,
        form=form,
        uploaded=set(),
        timeline=timeline,
    ), True


async def _draft_from_hint(
    session: AsyncSession,
    *,
    principal: Principal,
    item_code: str,
    client_key: str,
    groups: list[str],
    delivery: str | None,
    address: dict[str, str] | None,
) -> tuple[set[str], dict[str, Any]] | None:
    """The draft's given fields and row, built from the item's current version as this process
    last saw it, when the one-tap's checks pass on it; ``None`` when it cannot be (SQLite, no hint,
    a check failing: the request then checks against the item it reads)."""
    if session.sync_session.get_bind().dialect.name != "postgresql":
        return None
    hint = current_hint(item_code)
    if hint is None:
        return None
    version_id, version, item = hint
    offered = {p["group"] for p in prefill_preview(item)}
    if not groups or any(g not in offered for g in groups):
        return None
    try:
        _check_delivery(item, delivery, address)
        given = _draft_given(principal, item, version_id, version, client_key)
    except AppError:
        return None
    return set(given), model_row(Application, given)


async def proceed_submitted(
    session: AsyncSession,
    *,
    app: Application,
    actor: Principal | None,
    role: str,
    item: CatalogueItem | None = None,
    checked: Eligibility | None = None,
    form: dict[str, Any] | None = None,
    uploaded: set[str] | None = None,
    timeline: list[dict[str, Any]] | None = None,
) -> Application:
    """The application (already claimed as submitted) reaches its department: the clock starts, the
    rules may approve it at once (秒批), the resident is told. Called by ``submit`` for a free item
    or one charged at acceptance, and by the fee's paid handler for one charged at submission.

    Its row is written by the session's flush that follows (one UPDATE); the timeline entry (with
    those of ``timeline`` not written yet, in one INSERT) and the message by cached Core INSERTs
    of plain rows, without ORM objects."""
    item = item or await version_of(session, app)
    checked = checked or await eligibility.for_application(session, app=app, item=item)
    form = form if form is not None else form_of(app)
    uploaded = uploaded if uploaded is not None else await _uploaded_materials(session, app)
    now = utcnow()
    app.submitted_at = now
    app.due_at = workdays.due_at(now, app.limit_days)
    app.updated_at = now
    session.add(app)
    rows = timeline if timeline is not None else []
    await _timeline_entry(
        session,
        rows,
        app,
        kind="submitted",
        title="提交申请",
        actor=actor,
        role=role,
        data={
            "delivery": app.delivery,
            "version": app.item_version,
            "rules": {r.id: r.status for r in checked.results},
            **({"fee_fen": app.fee_fen} if app.fee_fen else {}),
        },
    )
    await _write_timeline(session, rows)
    if item.instant_approval:
        # The rules' compare-and-set reads the row as written so far.
        await session.flush()
    if await instant.try_approve(
        session, app=app, item=item, eligibility=checked, form=form, uploaded=uploaded
    ):
        return app
    if app.bundle_id is None:  # a life event's items are announced together (its own message)
        await notify.post(
            session,
            account_id=app.applicant_id,
            template=messages.SUBMITTED,
            params={"item": app.item_name, "number": app.number, "days": app.limit_days},
        )
    return app


async def withdraw(
    session: AsyncSession, *, app_id: str, principal: Principal, reason: str | None
) -> Application:
    """The resident withdraws an application not decided yet (撤回): a paid fee is refunded, and the
    client key is freed for a new application. Withdrawing again changes nothing."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    if app.status == WITHDRAWN:
        return app
    was = app.status
    await transition(session, app, WITHDRAWABLE, WITHDRAWN)
    now = utcnow()
    if was in (SUPPLEMENT, AWAITING_PAYMENT) and app.pauses and app.pauses[-1][1] is None:
        close_pause(app, now)
    key = fee_payments.release_client_key(app)
    app.decision_reason = reason
    app.fee_due_at, app.due_at, app.updated_at = None, None, now
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="withdrawn",
        title="申请人撤回申请",
        note=reason,
        actor=principal,
        role="resident",
        data={"from": was, "client_key": key},
    )
    await fee_payments.refund_paid(session, app, reason=fee_payments.REFUND_WITHDRAWN)
    await bundle_changed(session, app)
    return app


async def fill_fields(
    session: AsyncSession, *, app_id: str, principal: Principal, fields: dict[str, str]
) -> Application:
    """Fields the resident types (not from the records): e.g. what a fee rule or a condition rule
    reads. Record fields come only from the data center (``prefill``)."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.applicant_id != principal.id:
        raise ApplicationNotFound()
    if app.status != DRAFT:
        raise InvalidTransition("申请已提交，不能再修改填写内容")
    records = [k for k in fields if k in RECORD_FIELDS or k.split(".", 1)[0] in CONSENT_GROUPS]
    if records:
        raise ValidationFailed(
            f"以下信息只能经授权从人口库、法人库或电子证照库调取：{'、'.join(records)}", fields=records
        )
    form = form_of(app)
    form.update({k: v.strip() for k, v in fields.items()})
    set_form(app, form)
    app.updated_at = utcnow()
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="filled",
        title="填写申请信息",
        actor=principal,
        role="resident",
        data={"fields": sorted(fields)},
    )
    return app


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
    await transition(session, app, [SUPPLEMENT], ACCEPTED)
    now = utcnow()
    close_pause(app, now)
    app.due_at = workdays.due_at(started_at(app), app.limit_days, pauses=pauses_of(app))
    app.updated_at = now
    session.add(app)
    await session.flush()
    await record_event(
        session, app, kind="supplemented", title="补正材料，恢复计时", actor=principal, role="resident"
    )
    return app
