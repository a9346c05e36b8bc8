"""The resident's inbox and settings, and the operations view of deliveries (the endpoints' queries)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import paging
from app_api.core.db import utcnow
from app_api.core.errors import NotFound, ValidationFailed
from app_api.platform.notify.models import (
    Notification,
    NotificationAttempt,
    NotificationDispatch,
    NotifyPreference,
    NotifySubscription,
)
from app_api.platform.notify.preferences import preference_of
from app_api.platform.notify.schemas import (
    AttemptOut,
    ChannelStateOut,
    DeliveryOut,
    DeliveryReport,
    NotificationList,
    NotificationOut,
    NotificationSettingsOut,
    PreferenceUpdate,
    SubscriptionOut,
)
from app_api.platform.notify.settings import get_notify_settings
from app_api.platform.notify.templates import categories

STATUS_LABELS = {
    "pending": "发送中",
    "deferred": "免打扰时段，稍后发送",
    "retrying": "发送失败，稍后重试",
    "sent": "已发送",
    "failed": "发送失败",
    "unconfirmed": "已提交发送，未获确认",
    "in_app": "仅站内消息",
}


def notification_out(n: Notification) -> NotificationOut:
    return NotificationOut(
        id=n.id,
        template=n.template,
        text=n.text,
        status=n.status,
        status_label=STATUS_LABELS.get(n.status, n.status),
        channel=n.channel if n.status in ("sent", "in_app") else None,
        urgent=n.urgent,
        created_at=n.created_at,
        sent_at=n.sent_at,
        deferred_until=n.next_attempt_at if n.status == "deferred" else None,
        read=n.read_at is not None,
    )


async def messages_of(
    session: AsyncSession, account_id: str, *, cursor: str | None, limit: int
) -> NotificationList:
    """Messages sent to the resident, newest first, after ``cursor``, with the next page's cursor."""
    q = paging.after(
        select(Notification).where(Notification.account_id == account_id),
        at_column=col(Notification.created_at),
        id_column=col(Notification.id),
        cursor=cursor,
        limit=limit,
    )
    rows, next_cursor = paging.page((await session.exec(q)).all(), limit=limit, key=_key)
    return NotificationList(items=[notification_out(n) for n in rows], next_cursor=next_cursor)


def _key(n: Notification) -> tuple[dt.datetime, str]:
    return n.created_at, n.id


def _channel_rank(d: NotificationDispatch) -> tuple[int, str]:
    order = get_notify_settings().channel_order
    return (order.index(d.channel) if d.channel in order else len(order), d.channel)


async def mark_read(session: AsyncSession, account_id: str, notification_id: str) -> NotificationOut:
    n = await session.get(Notification, notification_id)
    if n is None or n.account_id != account_id:
        raise NotFound("未找到该消息")
    if n.read_at is None:
        n.read_at = utcnow()
        session.add(n)
        await session.flush()
    return notification_out(n)


async def settings_of(session: AsyncSession, account_id: str) -> NotificationSettingsOut:
    pref = await preference_of(session, account_id)
    subs = (
        await session.exec(select(NotifySubscription).where(NotifySubscription.account_id == account_id))
    ).all()
    return NotificationSettingsOut(
        sms_enabled=pref.sms_enabled,
        wechat_enabled=pref.wechat_enabled,
        quiet_hours_enabled=pref.quiet_hours_enabled,
        quiet_start=pref.quiet_start,
        quiet_end=pref.quiet_end,
        muted_categories=list(pref.muted_categories or []),
        categories=categories(),
        subscriptions=[
            SubscriptionOut(
                channel=s.channel,
                template=s.template,
                remaining=s.remaining,
                refused=s.refused_at is not None,
            )
            for s in subs
        ],
        note="紧急通知不受免打扰时段和渠道设置限制，始终以短信送达。",
    )


async def update_settings(
    session: AsyncSession, account_id: str, body: PreferenceUpdate
) -> NotificationSettingsOut:
    known = set(categories())
    if body.muted_categories is not None:
        unknown = sorted(set(body.muted_categories) - known)
        if unknown:
            raise ValidationFailed("存在未知的消息类别", unknown=unknown, allowed=sorted(known))
    pref = await session.get(NotifyPreference, account_id) or await preference_of(session, account_id)
    for name, value in body.model_dump(exclude_none=True).items():
        setattr(pref, name, value)
    pref.updated_at = utcnow()
    session.add(pref)
    await session.flush()
    return await settings_of(session, account_id)


async def delivery_report(
    session: AsyncSession, *, status: str | None, template: str | None, cursor: str | None, limit: int
) -> DeliveryReport:
    """Delivery status for operations: attempts per message, without the message text or its data;
    newest first, after ``cursor``."""
    q = select(Notification)
    if status:
        q = q.where(Notification.status == status)
    if template:
        q = q.where(Notification.template == template)
    q = paging.after(
        q, at_column=col(Notification.created_at), id_column=col(Notification.id), cursor=cursor, limit=limit
    )
    rows, next_cursor = paging.page((await session.exec(q)).all(), limit=limit, key=_key)
    ids = [n.id for n in rows]
    tries: dict[str, list[NotificationAttempt]] = {}
    dispatches: dict[str, list[NotificationDispatch]] = {}
    if ids:
        for a in (
            await session.exec(
                select(NotificationAttempt)
                .where(col(NotificationAttempt.notification_id).in_(ids))
                .order_by(col(NotificationAttempt.at))
            )
        ).all():
            tries.setdefault(a.notification_id, []).append(a)
        for d in (
            await session.exec(
                select(NotificationDispatch).where(col(NotificationDispatch.notification_id).in_(ids))
            )
        ).all():
            dispatches.setdefault(d.notification_id, []).append(d)
    grouped = await session.exec(  # type: ignore[call-overload]
        sa.select(col(Notification.status), sa.func.count()).group_by(col(Notification.status))
    )
    counts: dict[str, int] = {str(k): int(v) for k, v in grouped.all()}
    return DeliveryReport(
        counts=counts,
        items=[
            DeliveryOut(
                id=n.id,
                account_id=n.account_id,
                template=n.template,
                urgent=n.urgent,
                status=n.status,
                channel=n.channel,
                attempts=n.attempts,
                last_error=n.last_error,
                created_at=n.created_at,
                sent_at=n.sent_at,
                next_attempt_at=n.next_attempt_at,
                tries=[
                    AttemptOut(channel=a.channel, ok=a.ok, error_code=a.error_code, at=a.at)
                    for a in tries.get(n.id, [])
                ],
                channels=[
                    ChannelStateOut(
                        channel=d.channel,
                        state=d.state,
                        tries=d.tries,
                        error_code=d.error_code,
                        error=d.error,
                    )
                    for d in sorted(dispatches.get(n.id, []), key=_channel_rank)
                ],
            )
            for n in rows
        ],
        next_cursor=next_cursor,
    )
