"""The marketplace's institutions (banks, insurers, guarantors) and the loan products they publish."""

from __future__ import annotations

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.platform import audit
from app_api.platform.accounts.principal import Principal
from columns.loans.errors import InstitutionNotFound, NotAnOfficer, ProductNotFound
from columns.loans.models import Institution, Product
from columns.loans.schemas import SCOPE_NAMES, InstitutionCreate, ProductCreate, ProductPublic


async def create_institution(session: AsyncSession, *, data: InstitutionCreate, actor_id: str) -> Institution:
    i = Institution(**data.model_dump())
    session.add(i)
    await session.flush()
    await audit.record(
        session,
        action="loans.institution_created",
        actor_id=actor_id,
        subject_type="loans_institution",
        subject_id=i.id,
        data={"code": i.code},
    )
    return i


async def institutions(session: AsyncSession) -> list[Institution]:
    return list(
        (
            await session.exec(
                select(Institution).where(col(Institution.active).is_(True)).order_by(col(Institution.name))
            )
        ).all()
    )


def officer_institution(officer: Principal) -> str:
    if not officer.institution_id:
        raise NotAnOfficer()
    return officer.institution_id


async def create_product(session: AsyncSession, *, officer: Principal, data: ProductCreate) -> Product:
    inst = await session.get(Institution, officer_institution(officer))
    if inst is None:
        raise InstitutionNotFound()
    if "business" in data.applicant_types and "business.registration" not in data.shared_data:
        data.shared_data.append("business.registration")
    p = Product(institution_id=inst.id, **data.model_dump())
    session.add(p)
    await session.flush()
    await audit.record(
        session,
        action="loans.product_created",
        actor_id=officer.id,
        subject_type="loans_product",
        subject_id=p.id,
        data={"institution": inst.code, "name": p.name},
    )
    return p


async def products(
    session: AsyncSession, *, applicant_type: str | None = None, institution_id: str | None = None
) -> list[tuple[Product, Institution]]:
    q = (
        select(Product, Institution)
        .join(Institution, col(Institution.id) == col(Product.institution_id))
        .where(col(Product.active).is_(True), col(Institution.active).is_(True))
    )
    if institution_id:
        q = q.where(Product.institution_id == institution_id)
    rows = [(p, i) for p, i in (await session.exec(q.order_by(col(Product.min_rate_bp)))).all()]
    if applicant_type:
        rows = [(p, i) for p, i in rows if applicant_type in p.applicant_types]
    return rows


async def product(session: AsyncSession, product_id: str) -> tuple[Product, Institution]:
    p = await session.get(Product, product_id)
    i = await session.get(Institution, p.institution_id) if p else None
    if p is None or i is None or not p.active or not i.active:
        raise ProductNotFound()
    return p, i


def product_public(p: Product, i: Institution) -> ProductPublic:
    return ProductPublic(
        id=p.id,
        institution_id=i.id,
        institution_name=i.name,
        institution_kind=i.kind,
        name=p.name,
        description=p.description,
        min_amount_fen=p.min_amount_fen,
        max_amount_fen=p.max_amount_fen,
        min_term_months=p.min_term_months,
        max_term_months=p.max_term_months,
        min_rate_bp=p.min_rate_bp,
        max_rate_bp=p.max_rate_bp,
        applicant_types=p.applicant_types,
        materials=p.materials,
        shared_data=p.shared_data,
        shared_data_names=[SCOPE_NAMES[s] for s in p.shared_data],
    )
