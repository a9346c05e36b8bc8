"""Notifications to residents: one entry point, delivered by jobs with retries.

Packages and columns register their templates (``register_template``) and call ``send()`` inside
their transaction; the message is delivered after commit through the outbox, by SMS for now
(the mini-program bridge adds WeChat subscription messages as a channel). A delivery that fails is
retried with backoff; the row records each attempt and the final status, and a message is never
delivered twice (the task checks the row's status first).
"""

from __future__ import annotations

import datetime as dt
import logging
import string
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.access import CurrentAccount
from app_api.db import SessionDep, created_at_field, datetime_field, new_id, session_scope, utcnow
from app_api.jobs import broker, outbox
from app_api.settings import get_settings
from app_api.sms import get_sms

log = logging.getLogger(__name__)

_templates: dict[str, str] = {}


def register_template(key: str, text: str) -> None:
    """``text`` uses ``$name`` placeholders (string.Template), filled from ``params``."""
    _templates[key] = text


register_template("app.generic", "$text")


class Notification(SQLModel, table=True):
    __tablename__ = "app_notification"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    template: str = Field(max_length=80)
    params: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    text: str = Field(max_length=500)
    channel: str = Field(default="sms", max_length=20)
    urgent: bool = False
    status: str = Field(default="pending", max_length=20)  # pending, sent, failed
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = created_at_field()
    sent_at: dt.datetime | None = datetime_field()
    read_at: dt.datetime | None = datetime_field()


def render(template: str, params: dict[str, Any]) -> str:
    if template not in _templates:
        raise KeyError(f"unknown notification template {template!r}")
    city = get_settings().city_name
    return f"【我家{city}】" + string.Template(_templates[template]).safe_substitute(params)


async def send(
    session: AsyncSession,
    *,
    account_id: str,
    template: str,
    params: dict[str, Any] | None = None,
    urgent: bool = False,
) -> Notification:
    params = params or {}
    n = Notification(
        account_id=account_id, template=template, params=params, text=render(template, params), urgent=urgent
    )
    session.add(n)
    await session.flush()
    await outbox.enqueue(session, "app.notify_deliver", notification_id=n.id)
    return n


@broker.task(task_name="app.notify_deliver", retry_on_error=True, max_retries=5)
async def deliver(notification_id: str, outbox_id: str | None = None) -> str:
    from app_api.accounts.models import Account

    async with session_scope() as s:
        n = await s.get(Notification, notification_id, with_for_update=True)
        if n is None or n.status == "sent":
            return "skipped"
        account = await s.get(Account, n.account_id)
        if account is None:
            n.status = "failed"
            n.last_error = "account missing"
            s.add(n)
            return "failed"
        n.attempts += 1
        try:
            await get_sms().send(
                account.phone, n.text, template=n.template, params=[str(v) for v in n.params.values()]
            )
        except Exception as e:
            n.last_error = f"{type(e).__name__}: {e}"[:300]
            s.add(n)
            await s.commit()
            raise
        n.status, n.sent_at, n.last_error = "sent", utcnow(), None
        s.add(n)
    return "sent"


router = APIRouter(tags=["notifications"])


@router.get("/me/notifications")
async def my_notifications(principal: CurrentAccount, session: SessionDep, limit: int = 50) -> dict[str, Any]:
    """Messages sent to this resident, newest first."""
    rows = (
        await session.exec(
            select(Notification)
            .where(Notification.account_id == principal.id)
            .order_by(col(Notification.created_at).desc())
            .limit(min(max(limit, 1), 200))
        )
    ).all()
    return {
        "items": [
            {
                "id": n.id,
                "template": n.template,
                "text": n.text,
                "status": n.status,
                "created_at": n.created_at,
                "sent_at": n.sent_at,
            }
            for n in rows
        ]
    }
