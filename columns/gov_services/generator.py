"""A city-sized catalogue for benchmarks and load tests.

Bozhou publishes 6,669 items: most are the same guide implemented by many units (city, four
counties, their towns) and split into business variants (新办, 变更, 注销, 补领, 延续). The generator
does the same from the seed: every seed item x implementing unit x variant, with departments named
after the unit, so names, synonyms and departments repeat the way a real catalogue's do. The output
passes the same validation as the seed (``Catalogue``), and is deterministic for a given size.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from columns.gov_services.catalogue import Catalogue, CatalogueItem, Department, seed_catalogue

COUNTIES = ("谯城区", "涡阳县", "蒙城县", "利辛县")
TOWNS = ("城关街道", "高新区", "经开区", "古井镇", "十八里镇", "观堂镇", "义门镇", "双涧镇")
VARIANTS = ("", "（变更）", "（注销）", "（补领）", "（延续）", "（查询）")
# Village and community service stations (便民服务站) implement items too; these are common village
# names of the region, used generically.
VILLAGES = ("张庄村", "李楼村", "王集村", "刘寨村", "陈桥村", "赵庙社区")
_PREFIXES = ("亳州市", "谯城区")


def _suffix(department: str) -> str:
    for prefix in _PREFIXES:
        if department.startswith(prefix):
            return department[len(prefix) :]
    return department


def generate_catalogue(size: int = 7_000) -> Catalogue:
    """A validated catalogue of exactly ``size`` items (at most ``len(seed) * 228 * 6``, 72,504 from
    the seed's 53 items).

    The counties and their towns come first (every variant of each), then the village stations, so
    a catalogue of up to 11,448 items is the same whatever the maximum."""
    seed = seed_catalogue()
    towns = [(county, county + town) for county in COUNTIES for town in ("", *TOWNS)]
    villages = [
        (county, county + town + village) for county in COUNTIES for town in TOWNS for village in VILLAGES
    ]
    departments: dict[str, Department] = {d.name: d for d in seed.departments}
    items: list[CatalogueItem] = []
    phone_no = itertools.count(5_600_000)
    for tier_no, tier in enumerate((towns, villages)):
        for variant_no, variant in enumerate(VARIANTS):
            for unit_no, (county, unit) in enumerate(tier):
                for base in seed.items:
                    if len(items) >= size:
                        return Catalogue(departments=tuple(departments.values()), items=tuple(items))
                    items.append(
                        _variant(
                            base, county, unit, variant, departments, phone_no, tier_no, unit_no, variant_no
                        )
                    )
    if len(items) < size:
        raise ValueError(f"the seed can generate at most {len(items)} items")
    return Catalogue(departments=tuple(departments.values()), items=tuple(items))


def _variant(
    base: CatalogueItem,
    county: str,
    unit: str,
    variant: str,
    departments: dict[str, Department],
    phone_no: Iterator[int],
    tier_no: int,
    unit_no: int,
    variant_no: int,
) -> CatalogueItem:
    """``base`` as implemented by ``unit`` in ``variant``, its department created on first use."""
    suffix = _suffix(base.department)
    if suffix.endswith("街道办事处") or tier_no:
        suffix = "便民服务中心" if not tier_no else "便民服务站"
    dept_name = f"{unit}{suffix}"
    if dept_name not in departments:
        departments[dept_name] = Department(
            name=dept_name,
            level="县区" if unit == county else "乡镇",  # a village station answers to its town
            address=f"{unit}{'政务服务中心' if not tier_no else ''}{suffix}窗口",
            phone=f"0558-{next(phone_no)}",
            supervisor_phone=f"0558-{next(phone_no)}",
        )
    data: dict[str, Any] = base.model_dump()
    code_tail = f"{unit_no:02d}{variant_no}" if not tier_no else f"V{unit_no:03d}{variant_no}"
    data.update(
        code=f"{base.code}-{code_tail}",
        name=(base.name + variant)[:80],
        department=dept_name,
        level=departments[dept_name].level,
        contact_phone=departments[dept_name].phone,
        synonyms=tuple(s + variant.strip("（）") for s in base.synonyms) if variant else base.synonyms,
    )
    if data["where_to_go"]:
        data["where_to_go"] = f"{unit}{'政务服务中心' if not tier_no else ''}{suffix}窗口"
    return CatalogueItem.model_validate(data)
