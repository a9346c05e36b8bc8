from __future__ import annotations

import hmac
import secrets
from functools import cache
from typing import cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str, lookup_hash, mask_phone
from app_api.core.db import on_rollback, utcnow
from app_api.core.errors import DependencyUnavailable
from app_api.core.outage import unavailable_dependency
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import audit, sms
from app_api.platform.accounts import errors
from app_api.platform.accounts.models import Account, Role
from app_api.platform.accounts.principal import invalidate
from app_api.platform.accounts.tokens import TokenPair, issue_pair

_ph = PasswordHasher()

LOGIN_CODE = "login_code"
sms.declare(LOGIN_CODE, "您的登录验证码为$code，$minutes分钟内有效。请勿泄露给他人。")


def _code_hash(phone: str, code: str) -> bytes:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"{phone}:{code}".encode(), "sha256").digest()


def phone_hash(phone: str) -> str:
    return lookup_hash(phone, purpose="phone")


async def send_login_code(*, phone: str, client_ip: str) -> tuple[int, int]:
    s = get_settings()
    r = await get_redis()
    if await r.exists(f"sms:lock:{phone}"):
        raise errors.LoginLocked(retry_after=await r.ttl(f"sms:lock:{phone}"))
    ip_key = f"sms:ip:{client_ip}"
    day_key = f"sms:day:{phone}"
    # A cooldown of 0 means none (Redis refuses SET with EX 0, which was a 500 on every request).
    if s.sms_resend_cooldown_s > 0 and not await r.set(
        f"sms:cool:{phone}", b"1", ex=s.sms_resend_cooldown_s, nx=True
    ):
        raise errors.SmsCooldown(retry_after=await r.ttl(f"sms:cool:{phone}"))
    async with r.pipeline(transaction=True) as p:
        p.incr(day_key)
        p.expire(day_key, 86400, nx=True)
        p.incr(ip_key)
        p.expire(ip_key, 3600, nx=True)
        day_count, _, ip_count, _ = await p.execute()
    if int(day_count) > s.sms_per_phone_per_day:
        raise errors.SmsLimitExceeded()
    if int(ip_count) > s.sms_per_ip_per_hour:
        raise errors.SmsLimitExceeded("该网络发送验证码过于频繁，请稍后再试")
    code = f"{secrets.randbelow(10**6):06d}"
    async with r.pipeline(transaction=True) as p:
        p.set(f"sms:code:{phone}", _code_hash(phone, code), ex=s.sms_code_ttl_s)
        p.delete(f"sms:wrong:{phone}")
        await p.execute()
    try:
        await sms.get_sms().send(phone, LOGIN_CODE, {"code": code, "minutes": s.sms_code_ttl_s // 60})
    except sms.SmsFailed:
        # Nothing reached the phone: the resident may ask again at once.
        await r.delete(f"sms:code:{phone}", f"sms:cool:{phone}")
        raise
    return s.sms_code_ttl_s, s.sms_resend_cooldown_s


async def check_code(*, phone: str, code: str, session: AsyncSession | None = None) -> None:
    """Consume a login code: single use; five wrong tries lock the phone for 15 minutes.

    With ``session``: if the login's unit of work then fails because the database or Redis is away
    (answered 503), the code is put back for the rest of its life, so the resident's retry with the
    same code succeeds; a login refused for any other reason keeps it spent.
    """
    s = get_settings()
    r = await get_redis()
    if await r.exists(f"sms:lock:{phone}"):
        raise errors.LoginLocked(retry_after=await r.ttl(f"sms:lock:{phone}"))
    key = f"sms:code:{phone}"
    stored = await r.get(key)
    if stored is None:
        raise errors.CodeInvalid("验证码已失效，请重新获取")
    if not hmac.compare_digest(cast(bytes, stored), _code_hash(phone, code)):
        wrong = await r.incr(f"sms:wrong:{phone}")
        await r.expire(f"sms:wrong:{phone}", s.sms_code_ttl_s)
        if wrong >= s.sms_max_wrong:
            async with r.pipeline(transaction=True) as p:
                p.set(f"sms:lock:{phone}", b"1", ex=s.sms_lock_s)
                p.delete(key, f"sms:wrong:{phone}")
                await p.execute()
            raise errors.LoginLocked()
        raise errors.CodeInvalid(
            f"验证码错误，还可尝试{s.sms_max_wrong - wrong}次", tries_left=s.sms_max_wrong - wrong
        )
    # DEL tells who consumed it first: two concurrent logins with one code cannot both pass.
    async with r.pipeline(transaction=True) as p:
        p.pttl(key)
        p.delete(key)
        left_ms, deleted = await p.execute()
    if deleted != 1:
        raise errors.CodeInvalid("验证码已失效，请重新获取")
    await r.delete(f"sms:wrong:{phone}")
    if session is not None and left_ms > 0:

        async def put_back(error: BaseException) -> None:
            if unavailable_dependency(error) is not None or isinstance(error, DependencyUnavailable):
                # NX: a newer code sent meanwhile wins.
                await (await get_redis()).set(key, stored, px=left_ms, nx=True)

        on_rollback(session, put_back)


async def find_by_phone(session: AsyncSession, phone: str) -> Account | None:
    return (await session.exec(select(Account).where(Account.phone_hash == phone_hash(phone)))).first()


async def get_or_create_resident(session: AsyncSession, *, phone: str) -> tuple[Account, bool]:
    account = await find_by_phone(session, phone)
    if account is not None:
        return account, False
    account = Account(
        phone_hash=phone_hash(phone),
        phone_enc=encrypt_str(phone, aad="phone"),
        roles=[Role.resident.value],
        identity_level=1,
    )
    session.add(account)
    await session.flush()
    await audit.record(
        session,
        action="account.created",
        actor_id=account.id,
        subject_type="account",
        subject_id=account.id,
        data={"phone": mask_phone(phone)},
    )
    return account, True


async def login_resident(session: AsyncSession, *, phone: str, code: str) -> TokenPair:
    await check_code(phone=phone, code=code, session=session)
    account, _ = await get_or_create_resident(session, phone=phone)
    if account.is_staff:
        raise errors.PasswordRequired()
    return await _finish_login(session, account, method="sms")


async def login_staff(session: AsyncSession, *, phone: str, password: str, code: str) -> TokenPair:
    account = await find_by_phone(session, phone)
    # Verify the password before consuming the code, with equal work for unknown accounts.
    hashed = account.password_hash if account and account.password_hash else _dummy_hash()
    try:
        _ph.verify(hashed, password)
        ok = account is not None and account.password_hash is not None
    except (VerifyMismatchError, InvalidHashError):
        ok = False
    await check_code(phone=phone, code=code, session=session)
    if not ok or account is None:
        raise errors.BadCredentials()
    return await _finish_login(session, account, method="password+sms")


async def _finish_login(session: AsyncSession, account: Account, *, method: str) -> TokenPair:
    if not account.is_active:
        raise errors.AccountDisabled()
    account.last_login_at = utcnow()
    session.add(account)
    pair = await issue_pair(session, account.id)
    await audit.record(
        session,
        action="auth.login",
        actor_id=account.id,
        subject_type="account",
        subject_id=account.id,
        data={"method": method},
    )
    return pair


async def create_staff(
    session: AsyncSession,
    *,
    phone: str,
    password: str,
    roles: list[str],
    actor_id: str | None = None,
    department: str | None = None,
    institution_id: str | None = None,
    station_id: str | None = None,
    supervisor_of: str | None = None,
) -> Account:
    valid = {r.value for r in Role}
    bad = [r for r in roles if r not in valid]
    if bad:
        raise ValueError(f"unknown roles: {bad}")
    account = await find_by_phone(session, phone)
    if account is None:
        account = Account(phone_hash=phone_hash(phone), phone_enc=encrypt_str(phone, aad="phone"), roles=[])
        session.add(account)
        await session.flush()
    before = list(account.roles)
    account.roles = sorted(set(roles))
    account.password_hash = _ph.hash(password)
    account.department = department or account.department
    account.institution_id = institution_id or account.institution_id
    account.station_id = station_id or account.station_id
    account.supervisor_of = supervisor_of or account.supervisor_of
    session.add(account)
    await session.flush()
    await audit.record(
        session,
        action="account.roles_changed",
        actor_id=actor_id,
        subject_type="account",
        subject_id=account.id,
        data={"before": before, "after": account.roles},
    )
    await invalidate(account.id)
    return account


async def raise_level(
    session: AsyncSession, account_id: str, level: int, *, reason: str, actor_id: str | None = None
) -> Account:
    """Raise an account's identity level (never lowers it) and audit the change."""
    account = await session.get(Account, account_id)
    if account is None:
        raise ValueError("no such account")
    if level > account.identity_level:
        before = account.identity_level
        account.identity_level = level
        session.add(account)
        await session.flush()
        await audit.record(
            session,
            action="identity.level_raised",
            actor_id=actor_id or account_id,
            subject_type="account",
            subject_id=account_id,
            data={"from": before, "to": level, "reason": reason},
        )
        await invalidate(account_id)
    return account


@cache
def _dummy_hash() -> str:
    """A hash to verify against for unknown accounts; made on the first staff login, not at import
    (an argon2 hash is about a tenth of a second of CPU and 64 MiB touched)."""
    return _ph.hash("not-a-password-" + secrets.token_hex(8))
