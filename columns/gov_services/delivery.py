"""Results posted home for free (免费寄递): the waybill of an approved paper result, retries when
the carrier was down, and tracking until the parcel is delivered."""

from __future__ import annotations

import datetime as dt
import logging

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import session_scope, utcnow
from app_api.platform import notify
from columns.gov_services import messages
from columns.gov_services.config import get_config
from columns.gov_services.errors import PostalError
from columns.gov_services.lifecycle import address_of, record_event, version_of
from columns.gov_services.models import APPROVED, DELIVERED, POSTED, Application, Waybill
from columns.gov_services.postal import get_postal

log = logging.getLogger(__name__)


async def post_result(session: AsyncSession, *, app_id: str) -> Waybill | None:
    """Create the waybill for a result to post (job; idempotent on the application)."""
    app = await session.get(Application, app_id, with_for_update=True)
    if app is None or app.status != APPROVED or app.delivery != "免费邮寄" or app.bundle_id is not None:
        # A life event's result goes out with the others (``life_event_applications``).
        return None
    existing = (await session.exec(select(Waybill).where(Waybill.application_id == app.id))).first()
    if existing is not None:
        return existing
    receiver = address_of(app)
    if receiver is None or not (await version_of(session, app)).result.paper:
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


async def pending_posts(
    session: AsyncSession, *, older_than: dt.timedelta, within: dt.timedelta, limit: int
) -> list[str]:
    """Results approved for posting, decided between ``within`` and ``older_than`` ago, that have no
    waybill yet (their job failed: the carrier was down or unreachable)."""
    now = utcnow()
    rows = await session.exec(
        select(Application.id)
        .where(
            Application.status == APPROVED,
            Application.delivery == "免费邮寄",
            col(Application.bundle_id).is_(None),
            col(Application.decided_at) < now - older_than,
            col(Application.decided_at) >= now - within,
            ~select(Waybill.id).where(Waybill.application_id == Application.id).exists(),
        )
        .order_by(col(Application.decided_at))
        .limit(limit)
    )
    return list(rows.all())


async def post_pending(
    *,
    older_than: dt.timedelta | None = None,
    within: dt.timedelta = dt.timedelta(days=30),
    limit: int = 200,
) -> tuple[int, int]:
    """The sweep behind the posting job: post every pending result again, each in its own
    transaction (one that fails again does not stop the others; it is tried at the next sweep).
    Idempotent: a result posted meanwhile is skipped, and the carrier dedupes on the order id.
    Returns (posted, failed)."""
    if older_than is None:
        older_than = dt.timedelta(seconds=get_config().post_pending_grace_s)
    async with session_scope() as s:
        ids = await pending_posts(s, older_than=older_than, within=within, limit=limit)
    posted = failed = 0
    for app_id in ids:
        try:
            async with session_scope() as s:
                posted += (await post_result(s, app_id=app_id)) is not None
        except Exception as exc:  # the carrier still down: next sweep
            failed += 1
            log.warning("posting the result of %s failed again: %s", app_id, exc)
    return posted, failed


async def track_waybills(session: AsyncSession, *, limit: int = 200) -> int:
    """Ask the carrier about parcels still on their way; mark delivered ones."""
    rows = (await session.exec(select(Waybill).where(col(Waybill.status) != "delivered").limit(limit))).all()
    done = 0
    for wb in rows:
        try:
            tracking = await get_postal().track(wb.tracking_no)
        except PostalError as exc:  # this one next time; the others are still asked about
            log.warning("tracking waybill %s failed: %s", wb.tracking_no, exc)
            continue
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
