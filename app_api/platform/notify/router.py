"""The resident's messages and notification settings; the operations view of deliveries."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app_api.core.db import SessionDep
from app_api.core.paging import CursorQuery, LimitQuery
from app_api.platform.access import CurrentAccount, require_roles
from app_api.platform.notify import inbox
from app_api.platform.notify.schemas import (
    DeliveryReport,
    NotificationList,
    NotificationOut,
    NotificationSettingsOut,
    PreferenceUpdate,
)

router = APIRouter(tags=["notifications"])


@router.get("/me/notifications")
async def my_notifications(
    principal: CurrentAccount, session: SessionDep, cursor: CursorQuery = None, limit: LimitQuery = 50
) -> NotificationList:
    """Messages sent to this resident, newest first; page on with ``cursor`` (the last ``next_cursor``)."""
    return await inbox.messages_of(session, principal.id, cursor=cursor, limit=limit)


@router.post("/me/notifications/{notification_id}/read")
async def mark_read(notification_id: str, principal: CurrentAccount, session: SessionDep) -> NotificationOut:
    """Mark one message as read."""
    return await inbox.mark_read(session, principal.id, notification_id)


@router.get("/me/notification-settings")
async def my_notification_settings(principal: CurrentAccount, session: SessionDep) -> NotificationSettingsOut:
    """Channels, quiet hours, muted categories and WeChat subscription state."""
    return await inbox.settings_of(session, principal.id)


@router.patch("/me/notification-settings")
async def update_notification_settings(
    body: PreferenceUpdate, principal: CurrentAccount, session: SessionDep
) -> NotificationSettingsOut:
    """Change channels, quiet hours or muted categories (urgent messages still come by SMS)."""
    return await inbox.update_settings(session, principal.id, body)


@router.get("/admin/notifications", dependencies=[Depends(require_roles("admin"))])
async def admin_notifications(
    session: SessionDep,
    status: str | None = None,
    template: str | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 100,
) -> DeliveryReport:
    """Delivery status for operations: attempts per message, without the message text or its data;
    newest first, page on with ``cursor``."""
    return await inbox.delivery_report(session, status=status, template=template, cursor=cursor, limit=limit)
