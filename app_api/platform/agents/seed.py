"""Demo stations: the liaison stations for migrant workers and a few village agent points.

Seeded with readable ids ("changshu", ...) so the demo agent in ``app_api/seed.py``
(station_id "changshu") belongs to a real station. Idempotent.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform.agents.models import Station

STATIONS = [
    (
        "changshu",
        "LS-CS",
        "亳州驻常熟务工人员服务联络站",
        "liaison",
        "常熟",
        "虞山街道",
        "江苏省常熟市海虞北路88号人力资源市场一楼",
        "周一至周六 8:30-17:30",
        "刘站长",
        "0512-52881234",
    ),
    (
        "nantong",
        "LS-NT",
        "亳州驻南通务工人员服务联络站",
        "liaison",
        "南通",
        "崇川区",
        "江苏省南通市崇川区工农路111号",
        "周一至周五 8:30-17:30",
        "陈站长",
        "0513-85501234",
    ),
    (
        "jiangning",
        "LS-JN",
        "亳州驻南京江宁务工人员服务联络站",
        "liaison",
        "南京江宁",
        "东山街道",
        "江苏省南京市江宁区金箔路622号",
        "周一至周五 9:00-17:00",
        "王站长",
        "025-52101234",
    ),
    (
        "yiwu",
        "LS-YW",
        "亳州驻义乌务工人员服务联络站",
        "liaison",
        "义乌",
        "稠城街道",
        "浙江省义乌市工人北路1088号",
        "周一至周日 8:30-18:00",
        "张站长",
        "0579-85201234",
    ),
    (
        "pinghu",
        "LS-PH",
        "亳州驻平湖务工人员服务联络站",
        "liaison",
        "平湖",
        "当湖街道",
        "浙江省平湖市新华中路218号",
        "周一至周五 8:30-17:00",
        "李站长",
        "0573-85031234",
    ),
    (
        "shibali",
        "VL-QC-SBL",
        "谯城区十八里镇便民服务代办点",
        "village",
        "亳州",
        "谯城区十八里镇",
        "亳州市谯城区十八里镇政府便民服务中心",
        "周一至周五 8:00-12:00 14:30-17:30",
        "赵代办员",
        "0558-5801234",
    ),
    (
        "longshan",
        "VL-GY-LS",
        "涡阳县龙山镇代办点",
        "village",
        "亳州",
        "涡阳县龙山镇",
        "亳州市涡阳县龙山镇村民服务中心",
        "周一至周六 8:00-17:00",
        "孙代办员",
        "0558-7201234",
    ),
    (
        "lixin-zhangcun",
        "VL-LX-ZC",
        "利辛县张村镇代办点",
        "village",
        "亳州",
        "利辛县张村镇",
        "亳州市利辛县张村镇党群服务中心",
        "周一至周五 8:00-17:00",
        "周代办员",
        "0558-8801234",
    ),
]


async def seed(session: AsyncSession) -> str:
    added = 0
    for sid, code, name, kind, city, district, address, hours, contact, phone in STATIONS:
        if await session.get(Station, sid) is not None:
            continue
        session.add(
            Station(
                id=sid,
                code=code,
                name=name,
                kind=kind,
                city=city,
                district=district,
                address=address,
                hours=hours,
                contact_name=contact,
                contact_phone=phone,
            )
        )
        added += 1
    await session.flush()
    return f"stations +{added}"
