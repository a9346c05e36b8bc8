"""Department review (审核): the reviewer's queue, acceptance (受理), supplement requests (补正),
approval with the e-certificate and paper result, and rejection."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.core.errors import ValidationFailed
from app_api.core.jobs import outbox
from app_api.platform import notify
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.datahub.service import get_datahub
from columns.gov_services import fee_payments, messages
from columns.gov_services.catalogue import ECERT_CODES
from columns.gov_services.errors import ApplicationNotFound, OutsideDepartment
from columns.gov_services.lifecycle import (
    bundle_changed,
    close_pause,
    record_decision,
    record_event,
    tell,
    transition,
    version_of,
)
from columns.gov_services.models import (
    ACCEPTED,
    APPROVED,
    AWAITING_PAYMENT,
    DELIVERED,
    DRAFT,
    POSTED,
    REJECTED,
    SUBMITTED,
    SUPPLEMENT,
    Application,
)

# States of an instant approval a reviewer may still confirm or revoke.
INSTANT_REVIEWABLE = (APPROVED, POSTED, DELIVERED)


async def reviewable(session: AsyncSession, *, app_id: str, principal: Principal) -> Application:
    """Load an application for a reviewer, refusing one of another department."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.status == DRAFT:
        raise ApplicationNotFound()
    if not principal.department or principal.department != app.department:
        raise OutsideDepartment(department=app.department)
    return app


async def queue(session: AsyncSession, *, principal: Principal, status: str | None) -> list[Application]:
    """Open applications of the reviewer's department, and instant approvals sampled for review
    that no reviewer has confirmed or revoked yet."""
    q = select(Application).where(Application.department == (principal.department or ""))
    if status:
        q = q.where(Application.status == status)
    else:
        q = q.where(
            sa.or_(
                col(Application.status).in_([SUBMITTED, ACCEPTED, SUPPLEMENT]),
                sa.and_(
                    col(Application.instant_sampled).is_(True),
                    col(Application.instant_reviewed_at).is_(None),
                    col(Application.status).in_(INSTANT_REVIEWABLE),
                ),
            )
        )
    return list((await session.exec(q.order_by(col(Application.due_at).asc()).limit(200))).all())


async def accept(session: AsyncSession, *, app: Application, principal: Principal) -> Application:
    """受理. An item charged at acceptance then waits for its fee (``awaiting_payment``, the clock
    paused as for a supplement); the paid handler moves it on to ``accepted``."""
    charge = app.fee_charge_at == "accept" and app.fee_fen > 0 and app.fee_order_id is None
    await transition(session, app, [SUBMITTED], AWAITING_PAYMENT if charge else ACCEPTED)
    now = utcnow()
    app.accepted_at, app.reviewer_id, app.updated_at = now, principal.id, now
    if charge:
        app.pauses = [*app.pauses, [now.isoformat(), None, "待缴费"]]
        app.due_at = None
    session.add(app)
    await session.flush()
    await record_event(session, app, kind="accepted", title="已受理", actor=principal, role="reviewer")
    if charge:
        await fee_payments.await_payment(session, app, stage="accept", actor=principal, role="reviewer")
    else:
        await tell(session, app, "已受理")
    return app


async def request_supplement(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str, materials: list[str]
) -> Application:
    item = await version_of(session, app)
    names = {m.name for m in item.materials}
    bad = [m for m in materials if m not in names]
    if bad:
        raise ValidationFailed(f"本事项没有这些材料：{'、'.join(bad)}")
    await transition(session, app, [ACCEPTED], SUPPLEMENT)
    now = utcnow()
    app.pauses = [*app.pauses, [now.isoformat(), None, reason]]
    app.due_at, app.updated_at = None, now
    app.reviewer_id = app.reviewer_id or principal.id
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="supplement_requested",
        title="需要补正材料（暂停计时）",
        note=reason,
        actor=principal,
        role="reviewer",
        data={"materials": materials},
    )
    await notify.send(
        session,
        account_id=app.applicant_id,
        template=messages.SUPPLEMENT,
        params={"item": app.item_name, "number": app.number, "reason": reason},
    )
    return app


async def approve(
    session: AsyncSession,
    *,
    app: Application,
    principal: Principal | None,
    note: str | None,
    role: str = "reviewer",
    data: dict[str, Any] | None = None,
) -> Application:
    """Approve an accepted application. ``principal`` is None when the rules approve it (秒批,
    ``role`` "system"); ``data`` goes into the timeline and the audit record."""
    await transition(session, app, [ACCEPTED], APPROVED)
    item = await version_of(session, app)
    now = utcnow()
    record_decision(app, now)
    app.updated_at = now
    app.reviewer_id = app.reviewer_id or (principal.id if principal else None)
    if item.result.ecert:
        applicant = await session.get(Account, app.applicant_id)
        holder = applicant.id_number if applicant else None
        if holder:
            cert = await get_datahub().issue_certificate(
                session,
                holder_id_number=holder,
                cert_type=ECERT_CODES[item.result.ecert],
                title=item.result.ecert,
                issuer=app.department,
                data={"application": app.number, "item": app.item_code},
                source_ref=app.id,
            )
            app.result_cert_no = cert.cert_no
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="approved",
        title=f"办结：{item.result.name}",
        note=note,
        actor=principal,
        role=role,
        data={"cert_no": app.result_cert_no, **(data or {})},
    )
    extra = "电子证照已存入您的证照夹。" if app.result_cert_no else ""
    if app.bundle_id is not None:
        # One of a life event's items: its result is delivered with the others, once.
        if item.result.paper and app.delivery == "窗口领取":
            extra += f"纸质结果请在“一件事”全部办结后到{item.where_to_go or app.department}领取。"
        elif item.result.paper:
            extra += "纸质结果将在“一件事”全部办结后一并寄出。"
        await bundle_changed(session, app)
    elif item.result.paper and app.delivery == "免费邮寄":
        await outbox.enqueue(session, "gov_services.post_result", application_id=app.id)
        extra += "纸质结果将免费邮寄给您。"
    elif item.result.paper and app.delivery == "窗口领取":
        extra += f"请到{item.where_to_go or app.department}领取纸质结果。"
    await tell(session, app, "已办结", extra)
    return app


async def reject(
    session: AsyncSession, *, app: Application, principal: Principal, reason: str
) -> Application:
    was = app.status
    await transition(session, app, [SUBMITTED, ACCEPTED, SUPPLEMENT], REJECTED)
    now = utcnow()
    if was == SUPPLEMENT:
        close_pause(app, now)
    record_decision(app, now)
    app.decision_reason, app.updated_at = reason, now
    app.reviewer_id = app.reviewer_id or principal.id
    session.add(app)
    await session.flush()
    await record_event(
        session, app, kind="rejected", title="不予办理", note=reason, actor=principal, role="reviewer"
    )
    await tell(session, app, "不予办理", f"原因：{reason}")
    await fee_payments.refund_paid(session, app, reason=fee_payments.REFUND_REJECTED)
    await bundle_changed(session, app)
    return app
