from __future__ import annotations

from app_api.core.jobs import broker
from columns.provident_fund import service


@broker.task(task_name="provident_fund.submit_withdrawal", retry_on_error=True, max_retries=10)
async def submit_withdrawal(withdrawal_id: str, outbox_id: str | None = None) -> str:
    """Hand an application to the center; the center dedupes on our id, so a retry is harmless."""
    return await service.submit_withdrawal(withdrawal_id)
