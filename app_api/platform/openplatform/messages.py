"""Messages from third-party columns (issue 20, item 4).

A column proposes its message templates (``$name`` placeholders, at most 200 characters); an admin
approves or rejects each. The column's server then sends one to a resident it knows by the pairwise
subject id it got at sign-in, with an idempotency key. The message goes through the platform's
notification service, so the resident's channels, muted categories (``openplatform``) and quiet hours
apply, and it reaches only a resident whose authorisation of the column stands.

Refusals are problem+json with ``openplatform.*`` codes and audited: a template not approved, a
resident who did not authorise the column (or revoked it), parameters that do not fit the template,
an idempotency key reused for another message, more than ``DAILY_LIMIT`` messages to one resident
in a day. A resent request with the same key and body answers with the message already sent.
The quota and the idempotency record are rows in the database, so a Redis wipe changes neither.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import string
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import lock_for_writing, savepoint, utcnow
from app_api.core.errors import AppError, Conflict, NotFound, TooManyRequests, ValidationFailed
from app_api.platform import audit, notify
from app_api.platform.openplatform.models import (
    ColumnGrant,
    ColumnMessage,
    ColumnMessageTemplate,
    ExternalColumn,
)

TEMPLATE = "openplatform.column_message"
DAILY_LIMIT = 5
KEY = re.compile(r"[a-z][a-z0-9_]{1,39}")
PARAM_MAX = 60

notify.register_template(TEMPLATE, "$column：$text", category="openplatform")


class TemplateNotApproved(AppError):
    code = "openplatform.template_not_approved"
    title = "该消息模板不存在或尚未通过审核"
    status = 422


class TemplateExists(Conflict):
    code = "openplatform.template_exists"
    title = "该消息模板已提交"


class TemplateNotFound(NotFound):
    code = "openplatform.template_not_found"
    title = "未找到该消息模板"


class NotAuthorised(AppError):
    code = "openplatform.resident_not_authorised"
    title = "该居民未授权本栏目，或已撤回授权"
    status = 403


class ParamsInvalid(ValidationFailed):
    code = "openplatform.message_params_invalid"
    title = "消息参数与模板不符"


class KeyReused(Conflict):
    code = "openplatform.idempotency_key_reused"
    title = "该幂等键已用于另一条消息"


class DailyLimit(TooManyRequests):
    code = "openplatform.message_limit"
    title = "今日向该居民发送的消息已达上限"


def placeholders(text: str) -> set[str]:
    """The ``$name`` placeholders of a template (``ValueError`` if it is malformed)."""
    names: set[str] = set()
    for m in string.Template.pattern.finditer(text):
        if m.group("invalid") is not None:
            raise ValueError("模板中的 $ 后须为参数名")
        name = m.group("named") or m.group("braced")
        if name:
            names.add(name)
    return names


async def propose(
    session: AsyncSession, column: ExternalColumn, *, key: str, text: str
) -> ColumnMessageTemplate:
    """The column proposes a template; it waits for an admin's decision."""
    try:
        names = placeholders(text)
    except ValueError as e:
        raise ValidationFailed(str(e)) from e
    if not KEY.fullmatch(key) or not text.strip() or len(text) > 200 or len(names) > 10:
        raise ValidationFailed(
            "模板标识须为小写字母开头的2至40位字母、数字或下划线，内容1至200字，参数最多10个"
        )
    exists = (
        await session.exec(
            select(ColumnMessageTemplate).where(
                ColumnMessageTemplate.column_id == column.id, ColumnMessageTemplate.key == key
            )
        )
    ).first()
    if exists is not None:
        raise TemplateExists()
    t = ColumnMessageTemplate(column_id=column.id, key=key, text=text)
    session.add(t)
    await session.flush()
    await audit.record(
        session,
        action="openplatform.template_proposed",
        subject_type="external_column",
        subject_id=column.id,
        data={"key": key, "text": text},
    )
    return t


async def decide(
    session: AsyncSession, *, template_id: str, approve: bool, admin_id: str, note: str | None
) -> ColumnMessageTemplate:
    t = await session.get(ColumnMessageTemplate, template_id, with_for_update=True)
    if t is None:
        raise TemplateNotFound()
    t.status = "approved" if approve else "rejected"
    t.decided_by, t.decided_at, t.decision_note = admin_id, utcnow(), note
    session.add(t)
    await session.flush()
    await audit.record(
        session,
        action="openplatform.template_approved" if approve else "openplatform.template_rejected",
        actor_id=admin_id,
        subject_type="external_column",
        subject_id=t.column_id,
        data={"key": t.key, "note": note},
    )
    return t


async def templates_of(session: AsyncSession, *, column_id: str | None = None) -> list[ColumnMessageTemplate]:
    q = select(ColumnMessageTemplate)
    if column_id is not None:
        q = q.where(ColumnMessageTemplate.column_id == column_id)
    return list((await session.exec(q.order_by(col(ColumnMessageTemplate.proposed_at)))).all())


def _request_hash(subject: str, key: str, params: dict[str, str]) -> str:
    body = json.dumps([subject, key, params], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


async def _refused(session: AsyncSession, column: ExternalColumn, reason: str, **data: Any) -> None:
    await audit.record(
        session,
        action="openplatform.message_refused",
        subject_type="external_column",
        subject_id=column.id,
        data={"reason": reason, **data},
    )


async def send(
    session: AsyncSession,
    column: ExternalColumn,
    *,
    subject: str,
    template_key: str,
    params: dict[str, str],
    idempotency_key: str,
) -> tuple[ColumnMessage, bool]:
    """Send an approved template to the resident known to the column as ``subject``; returns the
    message and whether it was sent now (False: the same request was already sent)."""
    # The checks below (same key sent already? the day's count) and the write are one step: sends to one
    # resident from one column take turns (on SQLite the write lock from the start, so a concurrent
    # writer makes this wait instead of failing the upgrade from read to write).
    await lock_for_writing(session, key=f"openplatform.message:{column.id}:{subject}")
    digest = _request_hash(subject, template_key, params)
    earlier = (
        await session.exec(
            select(ColumnMessage).where(
                ColumnMessage.column_id == column.id, ColumnMessage.idempotency_key == idempotency_key
            )
        )
    ).first()
    if earlier is not None:
        if earlier.request_hash != digest:
            raise KeyReused()
        return earlier, False

    t = (
        await session.exec(
            select(ColumnMessageTemplate).where(
                ColumnMessageTemplate.column_id == column.id,
                ColumnMessageTemplate.key == template_key,
                ColumnMessageTemplate.status == "approved",
            )
        )
    ).first()
    if t is None:
        await _refused(session, column, "template_not_approved", template=template_key[:40])
        raise TemplateNotApproved()
    wanted = placeholders(t.text)
    bad = sorted(set(params) ^ wanted)
    long = sorted(k for k, v in params.items() if len(v) > PARAM_MAX or not v.strip())
    if bad or long:
        raise ParamsInvalid(
            f"模板参数为：{'、'.join(sorted(wanted)) or '无'}；每个参数1至{PARAM_MAX}字",
            expected=sorted(wanted),
        )
    grant = (
        await session.exec(
            select(ColumnGrant).where(
                ColumnGrant.column_id == column.id,
                ColumnGrant.subject == subject,
                col(ColumnGrant.revoked_at).is_(None),
            )
        )
    ).first()
    if grant is None:
        await _refused(session, column, "not_authorised")
        raise NotAuthorised()
    since = utcnow() - dt.timedelta(days=1)
    sent_today = (
        await session.exec(
            select(sa.func.count())
            .select_from(ColumnMessage)
            .where(
                ColumnMessage.column_id == column.id,
                ColumnMessage.account_id == grant.account_id,
                col(ColumnMessage.created_at) >= since,
            )
        )
    ).one()
    if int(sent_today) >= DAILY_LIMIT:
        await _refused(session, column, "daily_limit")
        raise DailyLimit(retry_after=3600)

    text = string.Template(t.text).substitute(params)
    try:
        async with savepoint(session):
            n = await notify.send(
                session,
                account_id=grant.account_id,
                template=TEMPLATE,
                params={"column": column.name, "text": text},
            )
            message = ColumnMessage(
                column_id=column.id,
                account_id=grant.account_id,
                template_id=t.id,
                idempotency_key=idempotency_key,
                request_hash=digest,
                notification_id=n.id,
            )
            session.add(message)
            await session.flush()
    except IntegrityError:
        # The same key sent twice at once: the other request's message is the answer.
        return await send(
            session,
            column,
            subject=subject,
            template_key=template_key,
            params=params,
            idempotency_key=idempotency_key,
        )
    await audit.record(
        session,
        action="openplatform.message_sent",
        subject_type="external_column",
        subject_id=column.id,
        data={"template": t.key, "message_id": message.id},
    )
    return message, True


__all__ = ["DAILY_LIMIT", "TEMPLATE", "decide", "placeholders", "propose", "send", "templates_of"]
