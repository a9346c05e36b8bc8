"""Results posted home for free (免费寄递): the waybill of an approved paper result, retries when
the carrier was down, and tracking until the parcel is delivered."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.platform import notify
from columns.gov_services import messages
from columns.gov_services.config import get_config
from columns.gov_services.lifecycle import address_of, record_event
from columns.gov_services.models import APPROVED, DELIVERED, POSTED, Application, Waybill
from columns.gov_services.postal import get_postal


async def post_result(session: AsyncSession, *, app_id: str) -> Waybill | None:
    """Create the waybill for a result to post (job; idempotent on the application)."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.status != APPROVED or app.delivery != "免费邮寄":
        return None
    existing = (await session.exec(select(Waybill).where(Waybill.application_id == app.id))).first()
    if existing is not None:
        return existing
    receiver = address_of(app)
    if receiver is None:
        return None
    result = await get_postal().create_waybill(
        order_id=app.id,
        receiver=receiver,
        sender=get_config().postal_sender,
        goods=f"{app.item_name}办理结果",
    )
    wb = Waybill(application_id=app.id, tracking_no=result.tracking_no, fee_fen=result.fee_fen)
    session.add(wb)
    app.status, app.tracking_no, app.updated_at = POSTED, result.tracking_no, utcnow()
    session.add(app)
    await session.flush()
    await record_event(
        session,
        app,
        kind="posted",
        title="结果已免费寄出",
        note=f"邮件号 {result.tracking_no}",
        actor=None,
        role="system",
        data={"tracking_no": result.tracking_no},
    )
    await notify.send(
        session,
        account_id=app.applicant_id,
        template=messages.POSTED,
        params={"item": app.item_name, "tracking_no": result.tracking_no},
    )
    return wb


async def post_pending(session: AsyncSession, *, older_than: dt.timedelta = dt.timedelta(minutes=2)) -> int:
    """Results approved for posting whose job failed (carrier down): try again."""
    cutoff = utcnow() - older_than
    ids = (
        await session.exec(
            select(Application.id).where(
                Application.status == APPROVED,
                Application.delivery == "免费邮寄",
                col(Application.decided_at) < cutoff,
            )
        )
    ).all()
    posted = 0
    for app_id in ids:
        posted += (await post_result(session, app_id=app_id)) is not None
    return posted


async def track_waybills(session: AsyncSession, *, limit: int = 200) -> int:
    """Ask the carrier about parcels still on their way; mark delivered ones."""
    rows = (await session.exec(select(Waybill).where(col(Waybill.status) != "delivered").limit(limit))).all()
    done = 0
    for wb in rows:
        tracking = await get_postal().track(wb.tracking_no)
        if tracking.status == wb.status:
            continue
        wb.status = tracking.status
        if tracking.status == "delivered":
            wb.delivered_at = utcnow()
            app = await session.get(Application, wb.application_id)
            if app is not None and app.status == POSTED:
                app.status, app.updated_at = DELIVERED, utcnow()
                session.add(app)
                await record_event(
                    session, app, kind="delivered", title="结果已签收", actor=None, role="system"
                )
            done += 1
        session.add(wb)
    await session.flush()
    return done
