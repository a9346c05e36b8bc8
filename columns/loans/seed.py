"""Demo data: three institutions (the seeded bank officer belongs to ``bozhou-rcb``) with products
for individuals and small businesses. Idempotent."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from columns.loans.models import Institution, Product

PEOPLE = ["identity.name", "identity.id_number", "contact.phone"]
BUSINESS = [*PEOPLE, "business.registration"]
DEMO: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
    (
        {
            "id": "bozhou-rcb",
            "code": "bozhou_rcb",
            "name": "亳州药都农村商业银行",
            "kind": "bank",
            "hotline": "0558-96669",
        },
        [
            {
                "name": "药都e贷",
                "description": "面向本市缴存公积金或社保的个人，线上申请，随借随还。",
                "min_amount_fen": 1_000_000,
                "max_amount_fen": 30_000_000,
                "min_term_months": 6,
                "max_term_months": 36,
                "min_rate_bp": 345,
                "max_rate_bp": 580,
                "applicant_types": ["individual"],
                "materials": ["身份证", "收入证明或公积金缴存证明"],
                "shared_data": PEOPLE,
            },
            {
                "name": "药商贷",
                "description": "面向中药材种植、加工、流通的小微企业和个体工商户。",
                "min_amount_fen": 5_000_000,
                "max_amount_fen": 300_000_000,
                "min_term_months": 12,
                "max_term_months": 60,
                "min_rate_bp": 385,
                "max_rate_bp": 650,
                "applicant_types": ["business"],
                "materials": ["营业执照", "法定代表人身份证", "近一年银行流水"],
                "shared_data": BUSINESS,
            },
        ],
    ),
    (
        {
            "id": "huishang-bz",
            "code": "huishang_bz",
            "name": "徽商银行亳州分行",
            "kind": "bank",
            "hotline": "96588",
        },
        [
            {
                "name": "徽常有·安居贷",
                "description": "家庭装修、购车等消费用途。",
                "min_amount_fen": 2_000_000,
                "max_amount_fen": 50_000_000,
                "min_term_months": 12,
                "max_term_months": 60,
                "min_rate_bp": 320,
                "max_rate_bp": 540,
                "applicant_types": ["individual"],
                "materials": ["身份证", "用途证明"],
                "shared_data": PEOPLE,
            },
        ],
    ),
    (
        {
            "id": "bz-guarantee",
            "code": "bz_guarantee",
            "name": "亳州市融资担保有限公司",
            "kind": "guarantor",
            "hotline": "0558-5525678",
        },
        [
            {
                "name": "创业担保贷",
                "description": "政府贴息的创业担保贷款，个人最高30万元，小微企业最高400万元。",
                "min_amount_fen": 1_000_000,
                "max_amount_fen": 400_000_000,
                "min_term_months": 12,
                "max_term_months": 36,
                "min_rate_bp": 0,
                "max_rate_bp": 350,
                "applicant_types": ["individual", "business"],
                "materials": ["身份证", "创业项目说明", "营业执照（企业）"],
                "shared_data": BUSINESS,
            },
        ],
    ),
]


async def seed(session: AsyncSession) -> str:
    added = 0
    for inst, products in DEMO:
        if await session.get(Institution, inst["id"]) is None:
            session.add(Institution(**inst))
            await session.flush()
            added += 1
        for p in products:
            exists = await session.exec(
                select(Product.id).where(Product.institution_id == inst["id"], Product.name == p["name"])
            )
            if exists.first() is None:
                session.add(Product(institution_id=inst["id"], **p))
                added += 1
    await session.flush()
    return f"{added} institutions and products"
