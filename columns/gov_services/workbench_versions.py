"""An item's version history as the catalogue editors' screens show it: the versions, what each
changed, and the difference between any two, field by field in the spreadsheet layout the editors
know from import and export (:func:`catalogue_io.item_to_row`), line by line inside a field."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from columns.gov_services.catalogue import CatalogueItem
from columns.gov_services.catalogue_io import item_to_row
from columns.gov_services.catalogue_store import version_item
from columns.gov_services.models import ItemVersion

HISTORY_LIMIT = 100


@dataclass
class FieldDiff:
    """One field that differs: its header and its lines, each ``("-"|"+"|" ", text)``."""

    header: str
    lines: list[tuple[str, str]] = field(default_factory=list)


async def versions(session: AsyncSession, *, code: str) -> list[ItemVersion]:
    """The item's versions, newest first (at most :data:`HISTORY_LIMIT`)."""
    q = (
        select(ItemVersion)
        .where(ItemVersion.code == code)
        .order_by(col(ItemVersion.version).desc())
        .limit(HISTORY_LIMIT)
    )
    return list((await session.exec(q)).all())


async def version_of(session: AsyncSession, *, code: str, number: int) -> ItemVersion | None:
    """One version of an item (versions never change, so reading one never races an edit)."""
    q = select(ItemVersion).where(ItemVersion.code == code, ItemVersion.version == number)
    return (await session.exec(q)).first()


def diff(old: CatalogueItem | None, new: CatalogueItem) -> list[FieldDiff]:
    """The fields of ``new`` that differ from ``old`` (every non-empty field when there is no old)."""
    before = item_to_row(old) if old is not None else {}
    after = item_to_row(new)
    out: list[FieldDiff] = []
    for header, text in after.items():
        was = before.get(header, "")
        if was == text:
            continue
        lines = [
            (line[0], line[2:])
            for line in difflib.ndiff(was.splitlines(), text.splitlines())
            if line[:1] in ("-", "+", " ")
        ]
        out.append(FieldDiff(header=header, lines=lines))
    return out


def changed_fields(rows: list[ItemVersion]) -> dict[int, list[str]]:
    """Per version number, the headers it changed from the version before it (``rows`` newest first)."""
    out: dict[int, list[str]] = {}
    ordered = sorted(rows, key=lambda v: v.version)
    previous: CatalogueItem | None = None
    for n, v in enumerate(ordered):
        item = version_item(v)
        # The oldest version listed may not be the first one: without its predecessor, say nothing.
        if n == 0 and v.version > 1:
            out[v.version] = []
        else:
            out[v.version] = [d.header for d in diff(previous, item)] if previous else ["首次发布"]
        previous = item
    return out
