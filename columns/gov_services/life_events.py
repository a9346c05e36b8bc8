"""Life events (一件事): items of several departments a resident does as one thing.

A life event (``Bundle``) names its items from the catalogue and the few fields its items do not ask
themselves (the newborn's name), each asked once. Everything else is derived from the items' current
versions, never written twice:

- the combined form: the bundle's fields and every record field the items fill or their rules read;
- the combined materials: one entry per material name, required if any item requires it;
- the order: an item whose required material is the e-certificate another item of the bundle issues
  (户口登记 needs the 出生医学证明) waits for that item's result, so it is filed with the certificate
  the bundle itself produced, never with an older one from the resident's wallet;
- one consent text per record group, naming every department that reads it.

Definitions are seeded from ``data/bundles.json`` (validated here, cycles refused).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import china_today
from app_api.core.db import utcnow
from columns.gov_services.catalogue import CODE_RE, CONSENT_GROUPS, RECORD_FIELDS, CatalogueItem, Material
from columns.gov_services.catalogue_store import get_item
from columns.gov_services.errors import BundleItemUnavailable, BundleNotFound, ItemNotFound
from columns.gov_services.fees import fee_fields
from columns.gov_services.models import Bundle
from columns.gov_services.rules import record_fields

BUNDLES_FILE = Path(__file__).parent / "data" / "bundles.json"
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
POST = "免费邮寄"


class BundleField(BaseModel):
    """A field the life event asks once (not a record field: those come from the data center)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    label: str = Field(min_length=1, max_length=30)
    required: bool = True
    choices: tuple[str, ...] = ()
    date: bool = False

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not FIELD_KEY.match(value) or value in RECORD_FIELDS or value.split(".", 1)[0] in CONSENT_GROUPS:
            raise ValueError(f"字段“{value}”不能用作一件事的填写项")
        return value

    def problem(self, value: str | None) -> str | None:
        """Why a value is not acceptable (Chinese), or None."""
        if not value:
            return f"请填写{self.label}" if self.required else None
        if self.choices and value not in self.choices:
            return f"{self.label}应为{'、'.join(self.choices)}之一"
        if self.date:
            try:
                day = dt.date.fromisoformat(value)
            except ValueError:
                return f"{self.label}应为日期，如 2026-01-31"
            if day > china_today():
                return f"{self.label}不能晚于今天"
        return None


class BundleDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str
    name: str = Field(min_length=2, max_length=80)
    summary: str = Field(min_length=1, max_length=500)
    items: tuple[str, ...] = Field(min_length=2, max_length=12)
    fields: tuple[BundleField, ...] = ()
    promised_days: int = Field(default=0, ge=0, le=365)
    synonyms: tuple[str, ...] = ()

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not CODE_RE.match(value):
            raise ValueError("一件事编码只能包含大写字母、数字和连字符")
        return value

    @model_validator(mode="after")
    def _unique(self) -> BundleDef:
        if len(set(self.items)) != len(self.items):
            raise ValueError("一件事的事项不能重复")
        if len({f.key for f in self.fields}) != len(self.fields):
            raise ValueError("一件事的填写项不能重复")
        return self


@lru_cache(maxsize=1)
def seed_bundles() -> tuple[BundleDef, ...]:
    data = json.loads(BUNDLES_FILE.read_text(encoding="utf-8"))
    return tuple(BundleDef.model_validate(b) for b in data["bundles"])


def def_of(row: Bundle) -> BundleDef:
    return BundleDef(
        code=row.code,
        name=row.name,
        summary=row.summary,
        items=tuple(row.item_codes),
        fields=tuple(BundleField.model_validate(f) for f in row.fields),
        promised_days=row.promised_days,
    )


async def seed(session: AsyncSession, items: dict[str, CatalogueItem]) -> int:
    """Load the shipped life events (idempotent): refused if an item is not in the catalogue or the
    items wait on each other in a cycle."""
    added = 0
    for b in seed_bundles():
        missing = [c for c in b.items if c not in items]
        if missing:
            raise ValueError(f"life event {b.code} names items not in the catalogue: {missing}")
        order_of([items[c] for c in b.items])
        row = (await session.exec(select(Bundle).where(Bundle.code == b.code))).first()
        if row is None:
            row = Bundle(code=b.code, name=b.name, summary=b.summary)
            added += 1
        row.name, row.summary, row.item_codes = b.name, b.summary, list(b.items)
        row.fields = [f.model_dump() for f in b.fields]
        row.promised_days, row.active, row.updated_at = b.promised_days, True, utcnow()
        session.add(row)
    await session.flush()
    return added


async def active_bundles(session: AsyncSession) -> list[Bundle]:
    return list(
        (
            await session.exec(select(Bundle).where(col(Bundle.active).is_(True)).order_by(col(Bundle.code)))
        ).all()
    )


async def get_bundle(session: AsyncSession, code: str) -> Bundle:
    row = (
        await session.exec(select(Bundle).where(Bundle.code == code, col(Bundle.active).is_(True)))
    ).first()
    if row is None:
        raise BundleNotFound(bundle_code=code)
    return row


async def items_of(session: AsyncSession, bundle: Bundle) -> list[tuple[str, CatalogueItem | None]]:
    """Each item code with its current version, None when it cannot be applied for now."""
    out: list[tuple[str, CatalogueItem | None]] = []
    for code in bundle.item_codes:
        try:
            out.append((code, (await get_item(session, code=code))[1]))
        except ItemNotFound:
            out.append((code, None))
    return out


async def available_items(session: AsyncSession, bundle: Bundle) -> list[CatalogueItem]:
    """The bundle's items, or :class:`BundleItemUnavailable` naming those that cannot be applied for."""
    found = await items_of(session, bundle)
    gone = [code for code, item in found if item is None]
    if gone:
        raise BundleItemUnavailable(
            f"“{bundle.name}”中的事项暂不可办理：{'、'.join(gone)}", bundle_code=bundle.code, items=gone
        )
    return [item for _, item in found if item is not None]


# ---------------------------------------------------------------- derived from the items


def _needed(m: Material) -> bool:
    return m.required and not m.condition


def producers(items: list[CatalogueItem]) -> dict[str, str]:
    """E-certificate type -> the code of the item of the bundle that issues it."""
    return {i.result.ecert: i.code for i in items if i.result.ecert}


def waits_for(item: CatalogueItem, items: list[CatalogueItem]) -> dict[str, str]:
    """Material name -> the item of the bundle whose result it is (not the item's own result)."""
    made = producers(items)
    return {
        m.name: made[m.ecert]
        for m in item.materials
        if _needed(m) and m.ecert in made and made[m.ecert] != item.code
    }


def order_of(items: list[CatalogueItem]) -> list[list[str]]:
    """The items in waves: each wave waits only for earlier ones. Raises on a cycle."""
    deps = {i.code: set(waits_for(i, items).values()) for i in items}
    waves: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(deps):
        wave = [c for c, d in deps.items() if c not in done and d <= done]
        if not wave:
            raise ValueError(f"items wait for each other in a cycle: {sorted(set(deps) - done)}")
        waves.append(wave)
        done |= set(wave)
    return waves


def wanted_fields(item: CatalogueItem) -> set[str]:
    """The form fields an item's application carries: its materials', its rules', its fee's."""
    return (
        {f for m in item.materials for f in m.fill_fields}
        | record_fields(item.rules)
        | set(fee_fields(item.fee))
    )


@dataclass
class CombinedMaterial:
    name: str
    required: bool
    ecert: str | None
    fill_fields: list[str]
    items: list[str] = field(default_factory=list)
    # Item codes whose results this material is, for the items that wait for it.
    produced_by: list[str] = field(default_factory=list)
    # Needed from the resident (an upload, the records or the wallet) by at least one item.
    from_resident: bool = False


def combined_materials(items: list[CatalogueItem]) -> list[CombinedMaterial]:
    """One entry per material name across the items (uploaded once, used by each item needing it)."""
    out: dict[str, CombinedMaterial] = {}
    for item in items:
        waiting = waits_for(item, items)
        for m in item.materials:
            cm = out.setdefault(m.name, CombinedMaterial(m.name, False, m.ecert, list(m.fill_fields)))
            cm.items.append(item.code)
            if not _needed(m):
                continue
            cm.required = True
            if m.name in waiting:
                if waiting[m.name] not in cm.produced_by:
                    cm.produced_by.append(waiting[m.name])
            else:
                cm.from_resident = True
    return list(out.values())


def record_groups(items: list[CatalogueItem]) -> dict[str, list[str]]:
    """Consent group -> the departments reading it, in item order."""
    groups: dict[str, list[str]] = {}
    for item in items:
        used = {f.split(".", 1)[0] for f in wanted_fields(item) if f in RECORD_FIELDS}
        if any(m.ecert for m in item.materials):
            used.add("certificate")
        for g in used:
            depts = groups.setdefault(g, [])
            if item.department not in depts:
                depts.append(item.department)
    return {g: groups[g] for g in CONSENT_GROUPS if g in groups}


def consent_text(bundle_name: str, group: str, departments: list[str]) -> str:
    return f"同意{'、'.join(departments)}为办理“{bundle_name}”调取您的{CONSENT_GROUPS[group]}"


def combined_fields(bundle: BundleDef, items: list[CatalogueItem]) -> list[dict[str, Any]]:
    """Every field of the combined form once: the bundle's own, then the record fields."""
    out: list[dict[str, Any]] = [
        {
            "key": f.key,
            "label": f.label,
            "required": f.required,
            "source": "resident",
            "choices": list(f.choices),
        }
        for f in bundle.fields
    ]
    seen: set[str] = set()
    for item in items:
        for key in sorted(wanted_fields(item)):
            if key in seen:
                continue
            seen.add(key)
            source = "records" if key in RECORD_FIELDS else "resident"
            out.append(
                {
                    "key": key,
                    "label": RECORD_FIELDS.get(key, key),
                    "required": True,
                    "source": source,
                    "choices": [],
                }
            )
    return out


def delivery_options(items: list[CatalogueItem]) -> list[str]:
    """How the life event's results can reach the resident, all at once."""
    if any(i.result.paper for i in items):
        return [POST, "窗口领取"]
    return ["电子送达"]


def child_delivery(item: CatalogueItem, choice: str) -> str:
    """The item's own delivery method under the life event's choice."""
    if choice in item.delivery:
        return choice
    if "电子送达" in item.delivery and not item.result.paper:
        return "电子送达"
    return item.delivery[0]
