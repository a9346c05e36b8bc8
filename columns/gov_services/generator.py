"""A city-sized catalogue for benchmarks and load tests.

Bozhou publishes 6,669 items: most are the same guide implemented by many units (city, four
counties, their towns) and split into business variants (新办, 变更, 注销, 补领, 延续). The generator
does the same from the seed: every seed item x implementing unit x variant, with departments named
after the unit, so names, synonyms and departments repeat the way a real catalogue's do. The output
passes the same validation as the seed (``Catalogue``), and is deterministic for a given size.
"""

from __future__ import annotations

import itertools
from typing import Any

from columns.gov_services.catalogue import Catalogue, CatalogueItem, Department, seed_catalogue

COUNTIES = ("谯城区", "涡阳县", "蒙城县", "利辛县")
TOWNS = ("城关街道", "高新区", "经开区", "古井镇", "十八里镇", "观堂镇", "义门镇", "双涧镇")
VARIANTS = ("", "（变更）", "（注销）", "（补领）", "（延续）", "（查询）")
_PREFIXES = ("亳州市", "谯城区")


def _suffix(department: str) -> str:
    for prefix in _PREFIXES:
        if department.startswith(prefix):
            return department[len(prefix) :]
    return department


def generate_catalogue(size: int = 7_000) -> Catalogue:
    """A validated catalogue of exactly ``size`` items (at most ``len(seed) * 4 * 9 * 6``)."""
    seed = seed_catalogue()
    units = [(county, county + town) for county in COUNTIES for town in ("", *TOWNS)]
    departments: dict[str, Department] = {d.name: d for d in seed.departments}
    items: list[CatalogueItem] = []
    phone_no = itertools.count(5_600_000)
    for variant_no, variant in enumerate(VARIANTS):
        for unit_no, (county, unit) in enumerate(units):
            for base in seed.items:
                if len(items) >= size:
                    return Catalogue(departments=tuple(departments.values()), items=tuple(items))
                suffix = _suffix(base.department)
                if suffix.endswith("街道办事处"):
                    suffix = "便民服务中心"
                dept_name = f"{unit}{suffix}"
                if dept_name not in departments:
                    departments[dept_name] = Department(
                        name=dept_name,
                        level="县区" if unit == county else "乡镇",
                        address=f"{unit}政务服务中心{suffix}窗口",
                        phone=f"0558-{next(phone_no)}",
                        supervisor_phone=f"0558-{next(phone_no)}",
                    )
                data: dict[str, Any] = base.model_dump()
                data.update(
                    code=f"{base.code}-{unit_no:02d}{variant_no}",
                    name=(base.name + variant)[:80],
                    department=dept_name,
                    level=departments[dept_name].level,
                    contact_phone=departments[dept_name].phone,
                    synonyms=tuple(s + variant.strip("（）") for s in base.synonyms)
                    if variant
                    else base.synonyms,
                )
                if data["where_to_go"]:
                    data["where_to_go"] = f"{unit}政务服务中心{suffix}窗口"
                items.append(CatalogueItem.model_validate(data))
    if len(items) < size:
        raise ValueError(f"the seed can generate at most {len(items)} items")
    return Catalogue(departments=tuple(departments.values()), items=tuple(items))
