"""Due-date reminders: every bound account's bills are refreshed and residents whose bills fall due
soon get one text per account (each bill is reminded of once)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import col, select

from app_api.core.clock import china_today
from app_api.core.db import session_scope, utcnow
from app_api.core.money import fen_to_yuan
from app_api.platform import notify
from columns.utilities.bills import outstanding
from columns.utilities.config import get_config, kind_name
from columns.utilities.models import Binding

notify.register_template(
    "utilities.due_reminder",
    "您绑定的$biller户号$account_no有$count笔账单共$amount元，将于$due_date到期，可在“水电气缴费”中缴纳。",
)


async def send_due_reminders(*, today: dt.date | None = None) -> int:
    """Refresh every bound account's bills and text residents whose bills fall due soon (once per bill)."""
    today = today or china_today()
    horizon = today + dt.timedelta(days=get_config().reminder_days_before)
    async with session_scope() as session:
        owners = list(
            (
                await session.exec(
                    select(Binding.account_id).where(col(Binding.unbound_at).is_(None)).distinct()
                )
            ).all()
        )
    sent = 0
    for owner in owners:
        async with session_scope() as session:
            for view in await outstanding(session, account_id=owner):
                due = [b for b in view.bills if b.due_date <= horizon and b.reminded_at is None]
                if not due:
                    continue
                for b in due:
                    b.reminded_at = utcnow()
                    session.add(b)
                await notify.send(
                    session,
                    account_id=owner,
                    template="utilities.due_reminder",
                    params={
                        "biller": kind_name(view.binding.kind),
                        "account_no": view.binding.account_no,
                        "count": len(due),
                        "amount": fen_to_yuan(sum(b.amount_fen for b in due)),
                        "due_date": min(b.due_date for b in due).strftime("%m月%d日"),
                    },
                )
                sent += 1
    return sent
