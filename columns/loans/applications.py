"""Applications: a resident applies with consent to share named data with one institution; every
change of status is one compare-and-set, an event, an audit entry and (when someone else moved it)
a notification to the applicant.

Personal data reaches an institution only through a consent the resident gives for that
institution (``app_api.platform.consent``: purpose ``loans.apply``, grantee = institution id, scopes =
the named data). The data is captured, encrypted, when the resident applies.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.crypto import encrypt_str
from app_api.core.db import utcnow
from app_api.core.money import yuan_text
from app_api.platform import audit, notify
from app_api.platform.accounts.models import Account
from app_api.platform.consent import service as consent
from columns.loans.catalogue import product
from columns.loans.config import get_config
from columns.loans.errors import (
    AmountOutOfRange,
    ApplicantTypeNotAllowed,
    ApplicationNotFound,
    BusinessInfoMissing,
    ConsentScopeMissing,
    IllegalTransition,
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
from columns.loans.schemas import SCOPE_NAMES, ApplicationCreate

CONSENT_PURPOSE = "loans.apply"
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


async def record_event(
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
            f"该产品额度为{yuan_text(p.min_amount_fen)}元至{yuan_text(p.max_amount_fen)}元",
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
    await record_event(
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


async def my_applications(
    session: AsyncSession, *, account_id: str, cursor: str | None, limit: int
) -> tuple[list[Application], str | None]:
    """The resident's applications newest first, after ``cursor``, and the next page's cursor."""
    q = paging.after(
        select(Application).where(Application.account_id == account_id),
        at_column=col(Application.created_at),
        id_column=col(Application.id),
        cursor=cursor,
        limit=limit,
    )
    return paging.page((await session.exec(q)).all(), limit=limit, key=lambda a: (a.created_at, a.id))


async def events_of(session: AsyncSession, application_ids: list[str]) -> dict[str, list[ApplicationEvent]]:
    """The history of each application (by id; every id has a key), oldest first, in one query."""
    out: dict[str, list[ApplicationEvent]] = {a: [] for a in application_ids}
    if not out:
        return out
    rows = await session.exec(
        select(ApplicationEvent)
        .where(col(ApplicationEvent.application_id).in_(list(out)))
        .order_by(col(ApplicationEvent.created_at))
    )
    for e in rows.all():
        out[e.application_id].append(e)
    return out


async def locked_application(session: AsyncSession, application_id: str) -> Application | None:
    stmt = select(Application).where(Application.id == application_id).with_for_update()
    return (await session.exec(stmt.execution_options(populate_existing=True))).first()


async def move(
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
    moved = await session.exec(
        sa.update(Application)
        .where(col(Application.id) == app.id, col(Application.status) == current.value)
        .values(status=target.value)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise IllegalTransition("该申请刚被他人处理，请刷新后查看", status=current.value)
    app.status, app.updated_at = target.value, utcnow()
    session.add(app)
    await record_event(session, app, action, current.value, target.value, actor_id, data)
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
    app = await locked_application(session, application_id)
    if app is None or app.account_id != account_id:
        raise ApplicationNotFound()
    if action == "supplement":
        app.supplement = text
    moved = await move(session, app, action, account_id)
    if action == "withdraw":
        # The institution no longer needs the data: the consent ends with the application.
        await consent.withdraw(session, account_id=account_id, consent_id=app.consent_id)
    return moved
