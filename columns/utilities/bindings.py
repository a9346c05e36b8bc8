"""Household accounts a resident binds: the biller confirms the holder's name first, and failed
attempts are counted per resident per day so that holder names cannot be guessed account by account."""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str
from app_api.core.db import savepoint, utcnow
from app_api.core.redis import get_redis
from app_api.platform import audit
from columns.utilities.adapters import get_adapter
from columns.utilities.config import get_config
from columns.utilities.errors import (
    AccountNotFound,
    AccountNumberInvalid,
    AlreadyBound,
    BindAttemptsExceeded,
    BindingNotFound,
    HolderNameMismatch,
    TooManyBindings,
    UnknownBiller,
)
from columns.utilities.models import Binding


async def active_bindings(session: AsyncSession, *, account_id: str) -> list[Binding]:
    rows = await session.exec(
        select(Binding)
        .where(Binding.account_id == account_id, col(Binding.unbound_at).is_(None))
        .order_by(col(Binding.created_at))
    )
    return list(rows.all())


async def owned_binding(session: AsyncSession, *, account_id: str, binding_id: str) -> Binding:
    b = await session.get(Binding, binding_id)
    if b is None or b.account_id != account_id or b.unbound_at is not None:
        raise BindingNotFound()
    return b


def _failures_key(account_id: str) -> str:
    return f"utilities:bind_failures:{account_id}:{utcnow():%Y%m%d}"


async def bind(
    session: AsyncSession,
    *,
    account_id: str,
    biller_code: str,
    account_no: str,
    holder_name: str,
    label: str = "",
) -> Binding:
    """Bind a household account once the biller confirms the holder's name."""
    cfg = get_config()
    biller = cfg.biller(biller_code)
    if biller is None:
        raise UnknownBiller(biller=biller_code)
    account_no = account_no.strip()
    if not re.fullmatch(biller.account_no_pattern, account_no):
        raise AccountNumberInvalid(biller=biller_code)
    current = await active_bindings(session, account_id=account_id)
    if any(b.biller_code == biller_code and b.account_no == account_no for b in current):
        raise AlreadyBound(biller=biller_code)
    if len(current) >= cfg.max_bound_accounts:
        raise TooManyBindings(limit=cfg.max_bound_accounts)
    redis = await get_redis()
    key = _failures_key(account_id)
    if int(await redis.get(key) or 0) >= cfg.bind_failures_per_day:
        raise BindAttemptsExceeded()
    try:
        info = await get_adapter(biller_code).verify_account(
            account_no=account_no, holder_name=holder_name.strip()
        )
    except (AccountNotFound, HolderNameMismatch):
        await redis.incr(key)
        await redis.expire(key, 86400)
        raise
    b = Binding(
        account_id=account_id,
        biller_code=biller_code,
        kind=biller.kind,
        account_no=info.account_no,
        holder_name_enc=encrypt_str(holder_name.strip(), aad="utilities.holder"),
        holder_masked=info.holder_masked,
        address_masked=info.address_masked,
        label=label,
    )
    try:
        async with savepoint(session):
            session.add(b)
            await session.flush()
    except sa.exc.IntegrityError as exc:
        raise AlreadyBound(biller=biller_code) from exc
    await audit.record(
        session,
        action="utilities.account_bound",
        actor_id=account_id,
        subject_type="utilities_binding",
        subject_id=b.id,
        data={"biller": biller_code, "account_no": account_no},
    )
    return b


async def unbind(session: AsyncSession, *, binding: Binding) -> None:
    binding.unbound_at = utcnow()
    session.add(binding)
    await session.flush()
    await audit.record(
        session,
        action="utilities.account_unbound",
        actor_id=binding.account_id,
        subject_type="utilities_binding",
        subject_id=binding.id,
        data={"biller": binding.biller_code},
    )
