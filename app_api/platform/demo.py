"""The development demo people: residents in the population registry and staff accounts.

``wojia seed`` writes them; development sandboxes (the provident-fund center) open accounts for them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app_api.platform.datahub.citizen_id import make


@dataclass(frozen=True)
class DemoResident:
    phone: str
    name: str
    region: str
    birth: dt.date
    seq: int
    address: str
    photo: str | None = None

    @property
    def id_number(self) -> str:
        return make(self.region, self.birth, self.seq)


# Region codes: 341602 谯城区, 341621 涡阳县, 341622 蒙城县, 341623 利辛县.
RESIDENTS = [
    DemoResident(
        "13800000001",
        "张建国",
        "341602",
        dt.date(1958, 3, 12),
        13,
        "安徽省亳州市谯城区魏武大道88号",
        photo="obama_1.jpg",
    ),
    DemoResident(
        "13800000002",
        "李秀英",
        "341621",
        dt.date(1949, 8, 2),
        24,
        "安徽省亳州市涡阳县城关镇老子路16号",
        photo="biden_1.jpg",
    ),
    DemoResident(
        "13800000003", "王小明", "341622", dt.date(1992, 11, 30), 35, "安徽省亳州市蒙城县庄周路101号"
    ),
    DemoResident(
        "13800000004", "刘芳", "341623", dt.date(1988, 5, 20), 46, "安徽省亳州市利辛县城关镇人民路9号"
    ),
    DemoResident("13800000005", "陈志强", "341602", dt.date(1975, 1, 8), 57, "安徽省亳州市谯城区药都路12号"),
]

STAFF = [
    ("13900000001", ["admin"], {}),
    ("13900000002", ["finance"], {}),
    ("13900000003", ["reviewer"], {"department": "谯城区民政局"}),
    ("13900000004", ["reviewer"], {"department": "谯城区市场监督管理局"}),
    ("13900000005", ["reviewer"], {"department": "谯城区民政局", "supervisor_of": "谯城区民政局"}),
    ("13900000006", ["agent"], {"station_id": "changshu"}),
    ("13900000007", ["bank_officer"], {"institution_id": "bozhou-rcb"}),
]
DEMO_PASSWORD = "Wojia-demo-2026"
