"""Jobs of the government services column."""

from __future__ import annotations

from app_api.core.db import session_scope
from app_api.core.jobs import broker
from columns.gov_services import delivery, fee_payments, life_event_applications, supervision
from columns.gov_services.config import get_config


@broker.task(task_name="gov_services.post_result")
async def post_result(application_id: str, outbox_id: str | None = None) -> str:
    """Create the waybill of an approved result to post (retried by the outbox relay if it fails)."""
    async with session_scope() as s:
        wb = await delivery.post_result(s, app_id=application_id)
    return wb.tracking_no if wb else "skipped"


@broker.task(task_name="gov_services.supervise", schedule=[{"cron": get_config().supervise_cron}])
async def supervise() -> int:
    async with session_scope() as s:
        return len(await supervision.supervise(s))


@broker.task(task_name="gov_services.post_pending", schedule=[{"cron": get_config().post_pending_cron}])
async def post_pending() -> str:
    """The last line of defence behind ``post_result``: results whose waybill is still missing
    (the job failed and its retries ran out, or it was lost) are posted again."""
    posted, failed = await delivery.post_pending()
    return f"posted {posted}, failed {failed}"


@broker.task(task_name="gov_services.track_waybills", schedule=[{"cron": "*/30 * * * *"}])
async def track_waybills() -> int:
    async with session_scope() as s:
        return await delivery.track_waybills(s) + await life_event_applications.track(s)


@broker.task(task_name=life_event_applications.PROGRESS_TASK)
async def bundle_progress(bundle_app_id: str, outbox_id: str | None = None) -> str:
    """A life event's item reached an end: file what waited for it; deliver once when all ended."""
    return await life_event_applications.progress(bundle_app_id)


@broker.task(task_name="gov_services.bundle_sweep", schedule=[{"cron": "*/10 * * * *"}])
async def bundle_sweep() -> int:
    """The last line of defence behind ``bundle_progress``: life events whose items have all ended
    but which were never completed (the job's retries ran out, or it was lost)."""
    return await life_event_applications.stalled()


@broker.task(task_name="gov_services.expire_fees", schedule=[{"cron": get_config().fee_expiry_cron}])
async def expire_fees() -> int:
    """Applications whose fee was not paid within the time limit are cancelled (client key freed)."""
    return await fee_payments.expire_due()
