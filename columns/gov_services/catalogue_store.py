"""The catalogue in the database: departments, items and their versions, and the search snapshot
the public search and the assistant answer from. Services take the session and only ``flush()``:
the caller commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.core.errors import ValidationFailed
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from columns.gov_services import catalogue_io
from columns.gov_services.catalogue import CatalogueItem, seed_catalogue
from columns.gov_services.catalogue import Department as DepartmentData
from columns.gov_services.errors import ItemNotFound
from columns.gov_services.models import Department, Item, ItemVersion
from columns.gov_services.search import CatalogueIndex, build_index

# Fields of a ``CatalogueItem`` kept in their own columns of the version, not in ``data``.
POLICY_FIELDS = {"rules", "instant_approval", "instant_sample_percent"}


# Item versions are immutable (an edit writes a new version), so the guide each one validates into
# is kept per version id: a submission loads its version once, or not at all once it is known.
_VERSIONS: dict[str, CatalogueItem] = {}
VERSIONS_KEPT = 4096


def version_item(v: ItemVersion) -> CatalogueItem:
    known = _VERSIONS.get(v.id)
    if known is not None:
        return known
    item = CatalogueItem.model_validate(
        {
            **v.data,
            "rules": v.rules,
            "instant_approval": v.instant_approval,
            "instant_sample_percent": v.instant_sample_percent,
        }
    )
    if v.id:
        if len(_VERSIONS) >= VERSIONS_KEPT:
            _VERSIONS.pop(next(iter(_VERSIONS)))
        _VERSIONS[v.id] = item
    return item


async def load_version(session: AsyncSession, version_id: str) -> CatalogueItem:
    """The guide of one item version: from memory when this process has seen it (versions never
    change), else one read."""
    known = _VERSIONS.get(version_id)
    if known is not None:
        return known
    v = await session.get(ItemVersion, version_id)
    assert v is not None
    return version_item(v)


def new_version(data: CatalogueItem, *, number: int, actor_id: str | None) -> ItemVersion:
    dumped = data.model_dump(mode="json")
    return ItemVersion(
        code=data.code,
        version=number,
        data={k: v for k, v in dumped.items() if k not in POLICY_FIELDS},
        rules=dumped["rules"],
        instant_approval=data.instant_approval,
        instant_sample_percent=data.instant_sample_percent,
        created_by=actor_id,
    )


async def known_departments(session: AsyncSession) -> set[str]:
    return set((await session.exec(select(Department.name))).all())


async def departments(session: AsyncSession) -> list[Department]:
    return list((await session.exec(select(Department).order_by(col(Department.name)))).all())


async def department_named(session: AsyncSession, name: str) -> Department | None:
    return (await session.exec(select(Department).where(Department.name == name))).first()


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
        if found is not None and version_item(found[1]) == data:
            counts["unchanged"] += 1
            continue
        number = found[0].version + 1 if found else 1
        version = new_version(data, number=number, actor_id=actor_id)
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
    """Load the shipped departments, items and life events (idempotent; used by ``wojia seed`` and
    tests)."""
    from columns.gov_services import life_events  # it reads items through this module

    cat = seed_catalogue()
    added = await upsert_departments(session, cat.departments)
    counts = await upsert_items(session, items=cat.items, actor_id=None)
    bundles = await life_events.seed(session, {i.code: i for i in cat.items})
    return f"departments +{added}, items {counts}, life events +{bundles}"


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
    return [version_item(v) for v in rows]


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
    _seen_current(row[0])
    return row[0], version_item(row[1])


async def get_item_for(
    session: AsyncSession,
    *,
    code: str,
    account_id: str,
    also: Any = None,
    params: dict[str, Any] | None = None,
) -> tuple[Item, CatalogueItem, Account | None, tuple[Any, ...]]:
    """An active item, its current version and the applicant's account: one statement (the version
    comes from memory once this process has seen it; versions never change). The one-tap
    submission reads the account's ID number next. The same statement reads the resident's message
    preference, which the submission's notice needs (``notify.preference_read``).

    ``also``: a statement built once from ``ITEM_FOR`` with more columns after its three (and CTEs:
    the one-tap draft's INSERT), run instead with ``params`` added; their values come fourth."""
    statement = ITEM_FOR if also is None else also
    row = (
        await session.exec(statement, params={"code": code, "account_id": account_id, **(params or {})})
    ).first()
    if row is None:
        raise ItemNotFound(item_code=code)
    if row[1] is not None:
        notify.preference_read(session, account_id, row[2])
    _seen_current(row[0])
    return row[0], await load_version(session, row[0].current_version_id), row[1], tuple(row[3:])


# Built once (no statement construction per submission; the engine caches its compiled form).
ITEM_FOR = (
    select(Item, Account, notify.NotifyPreference)
    .select_from(Item)
    .outerjoin(Account, col(Account.id) == sa.bindparam("account_id"))
    .outerjoin(notify.NotifyPreference, col(notify.NotifyPreference.account_id) == col(Account.id))
    .where(Item.code == sa.bindparam("code"), col(Item.active).is_(True))
)

# The current version of each item as this process last read it: (version id, version number).
# Only a hint (another process may have published a new version since): a statement that relies
# on it checks it in the database.
_CURRENT: dict[str, tuple[str, int]] = {}


def _seen_current(item: Item) -> None:
    _CURRENT[item.code] = (item.current_version_id, item.version)


def current_hint(code: str) -> tuple[str, int, CatalogueItem] | None:
    """The item's current version as this process last saw it, with its guide when in memory: a
    hint, to be checked in the database by whoever acts on it."""
    seen = _CURRENT.get(code)
    if seen is None:
        return None
    item = _VERSIONS.get(seen[0])
    return (seen[0], seen[1], item) if item is not None else None


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
