"""The cashier for external columns (issue 20, item 3).

A column's server opens an order for a resident it knows by the pairwise subject id (signed request,
its own order number as the idempotency key, amount in fen, description, one of its registered
merchant sub-accounts); the resident pays it in the app with WeChat Pay or Alipay through the
payments ledger (purpose ``openplatform.cashier``); the column is told through a signed notification
(:mod:`.cashier_notify`) and may refund, partly or wholly, never more than was paid.

The platform layer cannot import ``payments`` (it sits above): payments provides the
:class:`CashierPayments` port at import (``payments.external_cashier``) and calls
:func:`.cashier_notify.order_paid` from its paid hook.

Requests of a column's server are signed with the house convention of :mod:`app_api.core.signing`
(``x-app-id`` = the column's ``client_id``, ``x-timestamp``, ``x-nonce``, ``x-signature``) under the
cashier key its registration gave it. The nonce is a database row, so a replay is refused in every
process and after Redis was wiped. Every refusal is audited (``openplatform.cashier_refused`` with
its reason) and leaves nothing else written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core import signing
from app_api.core.clock import CHINA_TZ
from app_api.core.crypto import decrypt_str, encrypt_str
from app_api.core.db import lock_for_writing, savepoint, utcnow
from app_api.core.errors import AppError, Conflict, NotFound, ServiceUnavailable, ValidationFailed
from app_api.core.settings import get_settings
from app_api.platform import audit
from app_api.platform.openplatform.cashier_models import (
    CashierAccount,
    CashierNonce,
    CashierOrder,
    CashierRefund,
)
from app_api.platform.openplatform.config import get_openplatform_settings
from app_api.platform.openplatform.models import ColumnGrant, ExternalColumn

PURPOSE = "openplatform.cashier"
REFUND_SOURCE = "openplatform.cashier"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
SUB_ACCOUNT = re.compile(r"[A-Za-z0-9_-]{1,64}")


# --- errors ------------------------------------------------------------------------------------------


class SignatureInvalid(AppError):
    code = "openplatform.cashier_signature_invalid"
    title = "请求签名无效"
    status = 401


class TimestampStale(AppError):
    code = "openplatform.cashier_timestamp_stale"
    title = "请求时间戳已过期或与服务器时间相差过大"
    status = 401


class NonceReplayed(AppError):
    code = "openplatform.cashier_nonce_replayed"
    title = "该请求已处理过（随机串重复使用），请勿重放"
    status = 401


class ColumnDisabled(AppError):
    code = "openplatform.column_disabled"
    title = "该第三方栏目已停用"
    status = 403


class CashierNotEnabled(AppError):
    code = "openplatform.cashier_not_enabled"
    title = "该栏目尚未开通收银台"
    status = 403


class OrderNotFound(NotFound):
    code = "openplatform.cashier_order_not_found"
    title = "未找到该订单"


class OrderKeyReused(Conflict):
    code = "openplatform.cashier_order_no_reused"
    title = "该订单号已用于另一笔订单"


class SubAccountUnknown(ValidationFailed):
    code = "openplatform.cashier_sub_account_unknown"
    title = "收款子账户未登记"


class ResidentNotAuthorised(AppError):
    code = "openplatform.resident_not_authorised"
    title = "该居民未授权本栏目，或已撤回授权"
    status = 403


class OrderNotPaid(Conflict):
    code = "openplatform.cashier_order_not_paid"
    title = "订单尚未支付，不能退款"


class OrderAlreadyPaid(Conflict):
    code = "openplatform.cashier_order_paid"
    title = "该订单已支付"


class OrderClosed(Conflict):
    code = "openplatform.cashier_order_closed"
    title = "订单已超时关闭，请返回栏目重新下单"


class RefundExceedsPaid(AppError):
    code = "openplatform.cashier_refund_exceeds_paid"
    title = "退款金额超过可退金额"
    status = 422


class RefundKeyReused(Conflict):
    code = "openplatform.cashier_refund_no_reused"
    title = "该退款单号已用于另一笔退款"


class PaymentsUnavailable(ServiceUnavailable):
    code = "openplatform.cashier_unavailable"
    title = "收银服务暂不可用，请稍后再试"


# --- the payments port -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PaymentOpened:
    payment_order_id: str
    out_trade_no: str
    client_params: dict[str, str]


@dataclass(frozen=True, slots=True)
class RefundState:
    payment_refund_id: str
    out_refund_no: str
    amount_fen: int
    status: str


class CashierPayments(Protocol):
    """What the cashier needs of the payments ledger (provided by ``payments.external_cashier``)."""

    async def open(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        cashier_order_id: str,
        amount_fen: int,
        description: str,
        provider: str,
        channel: str,
        payer_id: str | None,
        client_ip: str,
    ) -> PaymentOpened: ...

    async def refund(
        self,
        session: AsyncSession,
        *,
        payment_order_id: str,
        amount_fen: int,
        out_refund_no: str,
        reason: str | None,
    ) -> RefundState: ...

    async def refunds(
        self, session: AsyncSession, payment_refund_ids: list[str]
    ) -> dict[str, RefundState]: ...

    async def reconciliation(
        self, session: AsyncSession, *, day: dt.date, payments: list[tuple[str, str]]
    ) -> dict[str, str]:
        """``out_trade_no`` -> ``matched``, a discrepancy category, or ``not_run`` (no finished run
        of that provider for the day)."""
        ...

    async def discrepancy_names(self) -> dict[str, str]:
        """The Chinese name of each reconciliation discrepancy category."""
        ...


_payments: CashierPayments | None = None


def provide_payments(impl: CashierPayments) -> None:
    global _payments
    _payments = impl


def payments_port() -> CashierPayments:
    if _payments is None:
        raise PaymentsUnavailable("收银服务未启用")
    return _payments


# --- registration (admin) ----------------------------------------------------------------------------


def _aad(column_id: str) -> str:
    return f"openplatform.cashier:{column_id}"


def column_secret(account: CashierAccount) -> str:
    return decrypt_str(account.secret_enc, aad=_aad(account.column_id))


async def register(
    session: AsyncSession,
    column: ExternalColumn,
    *,
    notify_url: str,
    sub_accounts: list[str],
    rotate_secret: bool,
    actor_id: str,
) -> tuple[CashierAccount, str | None]:
    """Open (or change) a column's cashier; returns the signing key when it was made now (shown once)."""
    parts = urlsplit(notify_url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValidationFailed("通知地址须为 http(s) 网址")
    # Notices carry payments: outside development they travel over TLS only (the development example
    # column listens for them on plain http on the loopback).
    if parts.scheme == "http" and get_settings().environment not in ("development", "test"):
        raise ValidationFailed("通知地址须为 https 网址")
    bad = [s for s in sub_accounts if not SUB_ACCOUNT.fullmatch(s)]
    if not sub_accounts or bad or len(sub_accounts) > 20:
        raise ValidationFailed("收款子账户须为1至20个，每个1至64位字母、数字、下划线或连字符")
    account = await session.get(CashierAccount, column.id, with_for_update=True)
    secret: str | None = None
    if account is None or rotate_secret:
        secret = secrets.token_urlsafe(32)
    if account is None:
        assert secret is not None
        account = CashierAccount(
            column_id=column.id,
            notify_url=notify_url,
            sub_accounts=sub_accounts,
            secret_enc=encrypt_str(secret, aad=_aad(column.id)),
            created_by=actor_id,
        )
    else:
        account.notify_url, account.sub_accounts, account.updated_at = notify_url, sub_accounts, utcnow()
        if secret is not None:
            account.secret_enc = encrypt_str(secret, aad=_aad(column.id))
    session.add(account)
    await session.flush()
    await audit.record(
        session,
        action="openplatform.cashier_registered",
        actor_id=actor_id,
        subject_type="external_column",
        subject_id=column.id,
        data={"notify_url": notify_url, "sub_accounts": sub_accounts, "new_secret": secret is not None},
    )
    return account, secret


# --- a column's signed request -----------------------------------------------------------------------


async def refused(session: AsyncSession, column_id: str | None, reason: str, **data: Any) -> None:
    """Audit a refusal (the caller commits it alone: nothing else of the request is written)."""
    await audit.record(
        session,
        action="openplatform.cashier_refused",
        subject_type="external_column",
        subject_id=column_id,
        data={"reason": reason, **data},
    )


async def authenticate(
    session: AsyncSession, *, headers: dict[str, str], method: str, path: str, body: bytes
) -> ExternalColumn:
    """The enabled column that signed this request, its nonce spent. Raises after auditing."""
    client_id = headers.get("x-app-id", "")[:64]
    column = (await session.exec(select(ExternalColumn).where(ExternalColumn.client_id == client_id))).first()
    if column is None:
        await refused(session, None, "unknown_client", client_id=client_id)
        raise SignatureInvalid("未知的 x-app-id")
    account = await session.get(CashierAccount, column.id)
    if account is None:
        await refused(session, column.id, "cashier_not_enabled")
        raise CashierNotEnabled()
    problem = signing.verify_request(
        headers, secret=column_secret(account), method=method, path=path, body=body
    )
    if problem == "stale_timestamp":
        await refused(session, column.id, "stale_timestamp", timestamp=headers.get("x-timestamp", "")[:20])
        raise TimestampStale(f"x-timestamp 须为距服务器时间 {signing.MAX_SKEW_S} 秒内的 Unix 秒数")
    if problem is not None:
        await refused(session, column.id, "bad_signature", path=path)
        raise SignatureInvalid()
    if not column.enabled:
        await refused(session, column.id, "column_disabled")
        raise ColumnDisabled()
    nonce = headers.get("x-nonce", "")
    if not NONCE.fullmatch(nonce):
        await refused(session, column.id, "bad_nonce")
        raise SignatureInvalid("x-nonce 须为16至64位字母、数字、下划线或连字符")
    try:
        async with savepoint(session):
            session.add(CashierNonce(column_id=column.id, nonce=nonce))
            await session.flush()
    except IntegrityError:
        await refused(session, column.id, "nonce_replayed", nonce=nonce)
        raise NonceReplayed() from None
    return column


async def purge_nonces(session: AsyncSession, *, now: dt.datetime | None = None) -> int:
    cutoff = (now or utcnow()) - dt.timedelta(days=1)
    res = await session.exec(sa.delete(CashierNonce).where(col(CashierNonce.seen_at) < cutoff))
    return int(res.rowcount or 0)


# --- orders ------------------------------------------------------------------------------------------


def _hash(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


async def create_order(
    session: AsyncSession,
    column: ExternalColumn,
    *,
    out_order_no: str,
    subject: str,
    amount_fen: int,
    description: str,
    sub_account: str,
) -> tuple[CashierOrder, bool]:
    """Open an order for the resident the column knows as ``subject``; (order, created now)."""
    digest = _hash(subject, amount_fen, description, sub_account)
    q = select(CashierOrder).where(
        CashierOrder.column_id == column.id, CashierOrder.out_order_no == out_order_no
    )
    earlier = (await session.exec(q)).first()
    if earlier is not None:
        if earlier.request_hash != digest:
            await refused(session, column.id, "order_no_reused", out_order_no=out_order_no)
            raise OrderKeyReused()
        return earlier, False
    account = await session.get(CashierAccount, column.id)
    assert account is not None  # authenticate() checked it
    if sub_account not in account.sub_accounts:
        await refused(session, column.id, "sub_account_unknown", sub_account=sub_account)
        raise SubAccountUnknown(f"已登记的收款子账户：{'、'.join(account.sub_accounts)}")
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
        await refused(session, column.id, "not_authorised")
        raise ResidentNotAuthorised()
    order = CashierOrder(
        column_id=column.id,
        out_order_no=out_order_no,
        request_hash=digest,
        account_id=grant.account_id,
        amount_fen=amount_fen,
        description=description,
        sub_account=sub_account,
        expires_at=utcnow() + dt.timedelta(seconds=get_openplatform_settings().cashier_order_ttl_s),
    )
    try:
        async with savepoint(session):
            session.add(order)
            await session.flush()
    except IntegrityError:
        # The same order number sent twice at once: the other request's order is the answer.
        return await create_order(
            session,
            column,
            out_order_no=out_order_no,
            subject=subject,
            amount_fen=amount_fen,
            description=description,
            sub_account=sub_account,
        )
    await audit.record(
        session,
        action="openplatform.cashier_order_created",
        subject_type="external_column",
        subject_id=column.id,
        data={"order_id": order.id, "out_order_no": out_order_no, "amount_fen": amount_fen},
    )
    return order, True


async def own_order(
    session: AsyncSession, column: ExternalColumn, order_id: str, *, lock: bool = False
) -> CashierOrder:
    """The column's own order; another column's is "not found", exactly like one that does not exist."""
    if lock:
        await lock_for_writing(session)
    order = await session.get(CashierOrder, order_id, with_for_update=lock, populate_existing=lock)
    if order is None or order.column_id != column.id:
        await refused(session, column.id, "order_not_found", order_id=order_id[:32])
        raise OrderNotFound()
    return order


async def refunds_of(
    session: AsyncSession, order: CashierOrder
) -> list[tuple[CashierRefund, RefundState | None]]:
    rows = list(
        (
            await session.exec(
                select(CashierRefund)
                .where(CashierRefund.order_id == order.id)
                .order_by(col(CashierRefund.created_at))
            )
        ).all()
    )
    if not rows:
        return []
    states = await payments_port().refunds(session, [r.payment_refund_id for r in rows])
    return [(r, states.get(r.payment_refund_id)) for r in rows]


async def refund(
    session: AsyncSession,
    column: ExternalColumn,
    *,
    order_id: str,
    out_refund_no: str,
    amount_fen: int,
    reason: str | None,
) -> tuple[CashierRefund, bool]:
    """Refund part or all of a paid order; idempotent by the column's refund number."""
    order = await own_order(session, column, order_id, lock=True)
    earlier = (
        await session.exec(
            select(CashierRefund).where(
                CashierRefund.column_id == column.id, CashierRefund.out_refund_no == out_refund_no
            )
        )
    ).first()
    if earlier is not None:
        if earlier.order_id != order.id or earlier.amount_fen != amount_fen:
            await refused(session, column.id, "refund_no_reused", out_refund_no=out_refund_no)
            raise RefundKeyReused()
        return earlier, False
    if order.status == "created" or order.payment_order_id is None:
        await refused(session, column.id, "order_not_paid", order_id=order.id)
        raise OrderNotPaid()
    refundable = order.amount_fen - order.refunded_fen
    if amount_fen > refundable:
        await refused(
            session,
            column.id,
            "refund_exceeds_paid",
            order_id=order.id,
            amount_fen=amount_fen,
            refundable_fen=refundable,
        )
        raise RefundExceedsPaid(f"可退金额为 {refundable} 分", refundable_fen=refundable)
    row_id = secrets.token_hex(16)
    state = await payments_port().refund(
        session,
        payment_order_id=order.payment_order_id,
        amount_fen=amount_fen,
        out_refund_no=f"OPR{row_id}",
        reason=reason,
    )
    r = CashierRefund(
        id=row_id,
        column_id=column.id,
        order_id=order.id,
        out_refund_no=out_refund_no,
        amount_fen=amount_fen,
        reason=reason,
        payment_refund_id=state.payment_refund_id,
    )
    order.refunded_fen += amount_fen
    order.status = "refunded" if order.refunded_fen == order.amount_fen else "paid"
    session.add_all([r, order])
    await session.flush()
    await audit.record(
        session,
        action="openplatform.cashier_refund_requested",
        subject_type="external_column",
        subject_id=column.id,
        data={"order_id": order.id, "out_refund_no": out_refund_no, "amount_fen": amount_fen},
    )
    return r, True


# --- the resident ------------------------------------------------------------------------------------


async def resident_order(
    session: AsyncSession, *, account_id: str, order_id: str
) -> tuple[CashierOrder, ExternalColumn]:
    order = await session.get(CashierOrder, order_id)
    if order is None or order.account_id != account_id:
        raise OrderNotFound()
    column = await session.get(ExternalColumn, order.column_id)
    assert column is not None
    return order, column


async def pay(
    session: AsyncSession,
    *,
    account_id: str,
    order_id: str,
    provider: str,
    channel: str,
    payer_id: str | None,
    client_ip: str,
) -> tuple[CashierOrder, PaymentOpened]:
    """The resident pays a column's order: a payment order at the provider of their choice.

    No lock across the provider call: two attempts at once make two payment orders of one purpose,
    and payments credits the second as a duplicate, which the paid hook refunds."""
    order, column = await resident_order(session, account_id=account_id, order_id=order_id)
    if not column.enabled:
        raise ColumnDisabled()
    if order.status == "closed" or (
        order.status == "created" and order.expires_at is not None and order.expires_at <= utcnow()
    ):
        await refused(session, column.id, "order_closed", order_id=order.id)
        raise OrderClosed()
    if order.status != "created":
        raise OrderAlreadyPaid()
    opened = await payments_port().open(
        session,
        account_id=account_id,
        cashier_order_id=order.id,
        amount_fen=order.amount_fen,
        description=f"{column.name} {order.description}",
        provider=provider,
        channel=channel,
        payer_id=payer_id,
        client_ip=client_ip,
    )
    return order, opened


# --- finance -----------------------------------------------------------------------------------------


def china_day(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=CHINA_TZ)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


async def paid_on(session: AsyncSession, day: dt.date) -> list[tuple[ExternalColumn, list[CashierOrder]]]:
    """Each column's orders paid on a China-time day, columns by name."""
    start, end = china_day(day)
    rows = (
        await session.exec(
            select(CashierOrder, ExternalColumn)
            .join(ExternalColumn, col(ExternalColumn.id) == col(CashierOrder.column_id))
            .where(col(CashierOrder.paid_at) >= start, col(CashierOrder.paid_at) < end)
            .order_by(col(ExternalColumn.name), col(CashierOrder.paid_at))
        )
    ).all()
    out: dict[str, tuple[ExternalColumn, list[CashierOrder]]] = {}
    for order, column in rows:
        out.setdefault(column.id, (column, []))[1].append(order)
    return list(out.values())
