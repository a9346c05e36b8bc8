"""The loans marketplace: products, applications and their review.

Personal data reaches an institution only through a consent the resident gives for that
institution (``app_api.platform.consent``: purpose ``loans.apply``, grantee = institution id, scopes = the
named data). The data is captured, encrypted, when the resident applies; an officer of that
institution sees it only while the consent stands, and every such view is audited. Officers see and
act on their own institution's applications only: anything else is "not found".
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_str, encrypt_str
from app_api.core.db import utcnow
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent import service as consent
from columns.loans.config import get_config
from columns.loans.errors import (
    AmountOutOfRange,
    ApplicantTypeNotAllowed,
    ApplicationNotFound,
    BusinessInfoMissing,
    ConsentScopeMissing,
    IllegalTransition,
    InstitutionNotFound,
    NotAnOfficer,
    ProductNotFound,
    RateOutOfRange,
    TermOutOfRange,
    TooManyOpenApplications,
)
from columns.loans.models import (
    OPEN,
    TRANSITIONS,
    Application,
    ApplicationEvent,
    Institution,
    Product,
    Status,
)
from columns.loans.schemas import ApplicantData, ApplicationCreate, InstitutionCreate, ProductCreate

CONSENT_PURPOSE = "loans.apply"
SCOPE_NAMES = {
    "identity.name": "姓名",
    "identity.id_number": "身份证号码",
    "contact.phone": "手机号码",
    "business.registration": "企业名称和统一社会信用代码",
}
STATUS_NAMES = {
    Status.SUBMITTED: "已提交",
    Status.ACCEPTED: "已受理",
    Status.INFO_REQUESTED: "需补充材料",
    Status.APPROVED: "已审批通过",
    Status.REJECTED: "未通过",
    Status.DISBURSED: "已放款",
    Status.WITHDRAWN: "已撤回",
}

notify.register_template(
    "loans.status_changed", "您向$institution申请的“$product”贷款状态更新为：$status。$note"
)


# -- institutions and products ------------------------------------------------------------------


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


# -- applications -------------------------------------------------------------------------------


async def _event(
    session: AsyncSession,
    app: Application,
    action: str,
    frm: str | None,
    to: str,
    actor_id: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    session.add(
        ApplicationEvent(
            application_id=app.id,
            action=action,
            from_status=frm,
            to_status=to,
            actor_id=actor_id,
            data=data or {},
        )
    )
    await audit.record(
        session,
        action=f"loans.application_{action}",
        actor_id=actor_id,
        subject_type="loans_application",
        subject_id=app.id,
        data={"from": frm, "to": to, **(data or {})},
    )


async def apply(session: AsyncSession, *, account_id: str, data: ApplicationCreate) -> Application:
    p, inst = await product(session, data.product_id)
    if data.applicant_type not in p.applicant_types:
        raise ApplicantTypeNotAllowed(allowed=p.applicant_types)
    if not p.min_amount_fen <= data.amount_fen <= p.max_amount_fen:
        raise AmountOutOfRange(
            f"该产品额度为{p.min_amount_fen // 100}元至{p.max_amount_fen // 100}元",
            min_amount_fen=p.min_amount_fen,
            max_amount_fen=p.max_amount_fen,
        )
    if not p.min_term_months <= data.term_months <= p.max_term_months:
        raise TermOutOfRange(
            f"该产品期限为{p.min_term_months}至{p.max_term_months}个月",
            min_term_months=p.min_term_months,
            max_term_months=p.max_term_months,
        )
    if data.applicant_type == "business" and not (data.business_name and data.business_credit_code):
        raise BusinessInfoMissing()
    missing = sorted(set(p.shared_data) - set(data.consent.scopes))
    if missing:
        raise ConsentScopeMissing(
            f"需同意提供：{'、'.join(SCOPE_NAMES[s] for s in missing)}", missing_scopes=missing
        )
    open_count = (
        await session.exec(
            select(sa.func.count())
            .select_from(Application)
            .where(Application.account_id == account_id, col(Application.status).in_([s.value for s in OPEN]))
        )
    ).one()
    if open_count >= get_config().open_applications_max:
        raise TooManyOpenApplications()
    account = await session.get(Account, account_id)
    assert account is not None
    scopes: list[str] = sorted(set(data.consent.scopes))
    shared = {
        "identity.name": account.real_name,
        "identity.id_number": account.id_number,
        "contact.phone": account.phone,
        "business.registration": {"name": data.business_name, "credit_code": data.business_credit_code}
        if data.applicant_type == "business"
        else None,
    }
    shared = {k: v for k, v in shared.items() if k in scopes}
    text = (
        f"我同意将我的{'、'.join(SCOPE_NAMES[s] for s in scopes)}提供给{inst.name}，"
        f"仅用于审核我申请的“{p.name}”贷款，不提供给其他机构。"
    )
    c = await consent.grant(
        session, account_id=account_id, purpose=CONSENT_PURPOSE, scopes=scopes, text=text, grantee=inst.id
    )
    app = Application(
        account_id=account_id,
        product_id=p.id,
        institution_id=inst.id,
        applicant_type=data.applicant_type,
        business_name=data.business_name,
        business_credit_code=data.business_credit_code,
        amount_fen=data.amount_fen,
        term_months=data.term_months,
        purpose=data.purpose,
        consent_id=c.id,
        shared_enc=encrypt_str(json.dumps(shared, ensure_ascii=False), aad="loans.shared"),
    )
    session.add(app)
    await session.flush()
    await _event(
        session,
        app,
        "submit",
        None,
        Status.SUBMITTED.value,
        account_id,
        {"amount_fen": data.amount_fen, "institution": inst.code},
    )
    return app


async def owned_application(session: AsyncSession, *, account_id: str, application_id: str) -> Application:
    a = await session.get(Application, application_id)
    if a is None or a.account_id != account_id:
        raise ApplicationNotFound()
    return a


async def my_applications(session: AsyncSession, *, account_id: str) -> list[Application]:
    return list(
        (
            await session.exec(
                select(Application)
                .where(Application.account_id == account_id)
                .order_by(col(Application.created_at).desc())
            )
        ).all()
    )


async def events(session: AsyncSession, app: Application) -> list[ApplicationEvent]:
    return list(
        (
            await session.exec(
                select(ApplicationEvent)
                .where(ApplicationEvent.application_id == app.id)
                .order_by(col(ApplicationEvent.created_at))
            )
        ).all()
    )


async def _locked(session: AsyncSession, application_id: str) -> Application | None:
    stmt = select(Application).where(Application.id == application_id).with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def _move(
    session: AsyncSession,
    app: Application,
    action: str,
    actor_id: str,
    data: dict[str, Any] | None = None,
    note: str = "",
) -> Application:
    current = Status(app.status)
    target = TRANSITIONS[action].get(current)
    if target is None:
        raise IllegalTransition(f"申请状态为“{STATUS_NAMES[current]}”，不能执行此操作", status=current.value)
    # Compare-and-set on the status, so two officers (or an officer and the applicant) acting at
    # once cannot both move it, on SQLite as on PostgreSQL; the loser gets the conflict.
    moved = await session.exec(  # type: ignore[call-overload]
        sa.update(Application)
        .where(col(Application.id) == app.id, col(Application.status) == current.value)
        .values(status=target.value)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise IllegalTransition("该申请刚被他人处理，请刷新后查看", status=current.value)
    app.status, app.updated_at = target.value, utcnow()
    session.add(app)
    await _event(session, app, action, current.value, target.value, actor_id, data)
    if actor_id != app.account_id:
        p = await session.get(Product, app.product_id)
        inst = await session.get(Institution, app.institution_id)
        await notify.send(
            session,
            account_id=app.account_id,
            template="loans.status_changed",
            params={
                "institution": inst.name if inst else "",
                "product": p.name if p else "",
                "status": STATUS_NAMES[target],
                "note": note,
            },
        )
    return app


async def resident_action(
    session: AsyncSession, *, account_id: str, application_id: str, action: str, text: str | None = None
) -> Application:
    app = await _locked(session, application_id)
    if app is None or app.account_id != account_id:
        raise ApplicationNotFound()
    if action == "supplement":
        app.supplement = text
    moved = await _move(session, app, action, account_id)
    if action == "withdraw":
        # The institution no longer needs the data: the consent ends with the application.
        await consent.withdraw(session, account_id=account_id, consent_id=app.consent_id)
    return moved


# -- officers -----------------------------------------------------------------------------------


async def officer_application(
    session: AsyncSession, *, officer: Principal, application_id: str, lock: bool = False
) -> Application:
    inst = officer_institution(officer)
    app = await _locked(session, application_id) if lock else await session.get(Application, application_id)
    if app is None or app.institution_id != inst:
        raise ApplicationNotFound()
    return app


async def officer_list(
    session: AsyncSession, *, officer: Principal, status: str | None, offset: int, limit: int
) -> tuple[list[Application], int]:
    q = select(Application).where(Application.institution_id == officer_institution(officer))
    if status:
        q = q.where(Application.status == status)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    rows = (
        await session.exec(
            q.order_by(col(Application.created_at).desc())
            .offset(offset)
            .limit(min(limit, get_config().page_size_max))
        )
    ).all()
    return list(rows), int(total)


async def applicant_data(session: AsyncSession, *, officer: Principal, app: Application) -> ApplicantData:
    try:
        c = await consent.require(
            session,
            consent_id=app.consent_id,
            account_id=app.account_id,
            purpose=CONSENT_PURPOSE,
            grantee=app.institution_id,
        )
    except consent.ConsentRequired:
        return ApplicantData(consent_valid=False)
    shared = json.loads(decrypt_str(app.shared_enc, aad="loans.shared"))
    allowed = {k: v for k, v in shared.items() if k in c.scopes}
    await audit.record(
        session,
        action="loans.applicant_data_viewed",
        actor_id=officer.id,
        subject_type="loans_application",
        subject_id=app.id,
        data={"scopes": sorted(allowed)},
    )
    biz = allowed.get("business.registration") or {}
    return ApplicantData(
        consent_valid=True,
        name=allowed.get("identity.name"),
        id_number=allowed.get("identity.id_number"),
        phone=allowed.get("contact.phone"),
        business_name=biz.get("name"),
        business_credit_code=biz.get("credit_code"),
    )


async def officer_action(
    session: AsyncSession, *, officer: Principal, application_id: str, action: str, **data: Any
) -> Application:
    app = await officer_application(session, officer=officer, application_id=application_id, lock=True)
    p = await session.get(Product, app.product_id)
    assert p is not None
    note = ""
    if action == "request_info":
        app.info_request = data["text"]
        note = f"请补充：{data['text']}"
    elif action == "approve":
        amount, rate, term = data["amount_fen"], data["rate_bp"], data["term_months"]
        if not p.min_amount_fen <= amount <= p.max_amount_fen:
            raise AmountOutOfRange(min_amount_fen=p.min_amount_fen, max_amount_fen=p.max_amount_fen)
        if not p.min_rate_bp <= rate <= p.max_rate_bp:
            raise RateOutOfRange(min_rate_bp=p.min_rate_bp, max_rate_bp=p.max_rate_bp)
        if not p.min_term_months <= term <= p.max_term_months:
            raise TermOutOfRange(min_term_months=p.min_term_months, max_term_months=p.max_term_months)
        app.approved_amount_fen, app.approved_rate_bp, app.approved_term_months = amount, rate, term
        note = f"批准金额{amount // 100}元，年利率{rate / 100:.2f}%，期限{term}个月。"
    elif action == "reject":
        app.reject_reason = data["reason"]
        note = f"原因：{data['reason']}"
    elif action == "disburse":
        if app.status == Status.APPROVED and data["amount_fen"] > (app.approved_amount_fen or 0):
            raise AmountOutOfRange("放款金额不能超过批准金额", approved_amount_fen=app.approved_amount_fen)
        app.disbursed_fen, app.disbursed_at = data["amount_fen"], utcnow()
        note = f"放款{data['amount_fen'] // 100}元。"
    app.officer_id = officer.id
    return await _move(session, app, action, officer.id, {k: v for k, v in data.items() if k != "text"}, note)


# -- statistics ---------------------------------------------------------------------------------


async def statistics(session: AsyncSession, *, institution_id: str | None = None) -> dict[str, Any]:
    base = select(Application)
    if institution_id:
        base = base.where(Application.institution_id == institution_id)
    sub = base.subquery()
    approved = sa.or_(sub.c.status == Status.APPROVED.value, sub.c.status == Status.DISBURSED.value)
    disbursed = sub.c.status == Status.DISBURSED.value
    row = (
        await session.exec(
            select(  # type: ignore[call-overload]
                sa.func.count(sa.distinct(sub.c.account_id)),
                sa.func.count(
                    sa.distinct(sa.case((sub.c.applicant_type == "business", sub.c.business_credit_code)))
                ),
                sa.func.count(),
                sa.func.count(sa.case((approved, 1))),
                sa.func.count(sa.case((disbursed, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((disbursed, sub.c.disbursed_fen), else_=0)), 0),
            )
        )
    ).one()
    per = (
        await session.exec(
            select(  # type: ignore[call-overload]
                sub.c.institution_id,
                Institution.name,
                sa.func.count(sa.distinct(sub.c.account_id)),
                sa.func.count(),
                sa.func.count(sa.case((approved, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((approved, sub.c.approved_amount_fen), else_=0)), 0),
                sa.func.count(sa.case((disbursed, 1))),
                sa.func.coalesce(sa.func.sum(sa.case((disbursed, sub.c.disbursed_fen), else_=0)), 0),
            )
            .join(Institution, col(Institution.id) == sub.c.institution_id)
            .group_by(sub.c.institution_id, Institution.name)
            .order_by(Institution.name)
        )
    ).all()
    return {
        "registered_applicants": int(row[0]),
        "business_applicants": int(row[1]),
        "applications": int(row[2]),
        "approvals": int(row[3]),
        "disbursements": int(row[4]),
        "disbursed_fen": int(row[5]),
        "institutions": [
            {
                "institution_id": r[0],
                "institution_name": r[1],
                "applicants": int(r[2]),
                "applications": int(r[3]),
                "approvals": int(r[4]),
                "approved_fen": int(r[5]),
                "disbursements": int(r[6]),
                "disbursed_fen": int(r[7]),
            }
            for r in per
        ],
    }
