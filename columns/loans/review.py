"""Review by the institution's officers: they see and act on their own institution's applications
only (anything else is "not found"), and see the applicant's shared data only while the consent
stands; every such view is audited."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.crypto import decrypt_str
from app_api.core.db import utcnow
from app_api.core.money import yuan_text
from app_api.platform import audit
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from columns.loans.applications import CONSENT_PURPOSE, locked_application, move
from columns.loans.catalogue import officer_institution
from columns.loans.config import get_config
from columns.loans.errors import AmountOutOfRange, ApplicationNotFound, RateOutOfRange, TermOutOfRange
from columns.loans.models import Application, Product, Status
from columns.loans.schemas import ApplicantData


async def officer_application(
    session: AsyncSession, *, officer: Principal, application_id: str, lock: bool = False
) -> Application:
    inst = officer_institution(officer)
    app = (
        await locked_application(session, application_id)
        if lock
        else await session.get(Application, application_id)
    )
    if app is None or app.institution_id != inst:
        raise ApplicationNotFound()
    return app


async def officer_list(
    session: AsyncSession,
    *,
    officer: Principal,
    status: str | None,
    cursor: str | None,
    offset: int,
    limit: int,
) -> tuple[list[Application], int, str | None]:
    """The institution's applications newest first, after ``cursor`` (or, deprecated, ``offset`` rows
    in); the total and the next page's cursor."""
    q = select(Application).where(Application.institution_id == officer_institution(officer))
    if status:
        q = q.where(Application.status == status)
    total = (await session.exec(select(sa.func.count()).select_from(q.subquery()))).one()
    limit = min(limit, get_config().page_size_max)
    stmt = paging.after(
        q, at_column=col(Application.created_at), id_column=col(Application.id), cursor=cursor, limit=limit
    )
    rows = (await session.exec(stmt.offset(0 if cursor else offset))).all()
    items, next_cursor = paging.page(rows, limit=limit, key=lambda a: (a.created_at, a.id))
    return items, int(total), next_cursor


async def applicant_data(
    session: AsyncSession, *, officer: Principal, apps: list[Application]
) -> dict[str, ApplicantData]:
    """What the officer may see of each applicant (by application id), each view audited.

    The consents are loaded in one query; ``consent.require`` then finds each in the session's
    identity map (``loaded`` keeps them there) instead of asking the database once per application.
    """
    ids = [a.consent_id for a in apps if a.consent_id]
    loaded = list((await session.exec(select(Consent).where(col(Consent.id).in_(ids)))).all()) if ids else []
    out: dict[str, ApplicantData] = {}
    for app in apps:
        try:
            c = await consent.require(
                session,
                consent_id=app.consent_id,
                account_id=app.account_id,
                purpose=CONSENT_PURPOSE,
                grantee=app.institution_id,
            )
        except consent.ConsentRequired:
            out[app.id] = ApplicantData(consent_valid=False)
            continue
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
        out[app.id] = ApplicantData(
            consent_valid=True,
            name=allowed.get("identity.name"),
            id_number=allowed.get("identity.id_number"),
            phone=allowed.get("contact.phone"),
            business_name=biz.get("name"),
            business_credit_code=biz.get("credit_code"),
        )
    del loaded
    return out


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
        note = f"批准金额{yuan_text(amount)}元，年利率{rate / 100:.2f}%，期限{term}个月。"
    elif action == "reject":
        app.reject_reason = data["reason"]
        note = f"原因：{data['reason']}"
    elif action == "disburse":
        if app.status == Status.APPROVED and data["amount_fen"] > (app.approved_amount_fen or 0):
            raise AmountOutOfRange("放款金额不能超过批准金额", approved_amount_fen=app.approved_amount_fen)
        app.disbursed_fen, app.disbursed_at = data["amount_fen"], utcnow()
        note = f"放款{yuan_text(data['amount_fen'])}元。"
    app.officer_id = officer.id
    return await move(session, app, action, officer.id, {k: v for k, v in data.items() if k != "text"}, note)
