"""Mini-program login and binding.

A login code becomes an openid (WeChat code2session, Alipay oauth.token). A bound openid logs the
account in with our own tokens. An unbound one gets a single-use ticket; the resident proves a phone
with it (WeChat's phone-number API, or the platform's SMS code) and the openid is bound to the
account of that phone (created on first use). One openid belongs to one account, and one account
has at most one openid per mini-program: anything else is refused, never silently rebound.

Also the WeChat subscribe-message prompts: which templates to ask for, and what the resident answered.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import encrypt_str, mask_phone
from app_api.core.db import utcnow
from app_api.core.errors import ValidationFailed
from app_api.core.redis import get_redis
from app_api.platform import audit, notify
from app_api.platform.accounts import service as accounts
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.tokens import TokenPair, issue_pair
from miniprogram_bridge import alipay, errors, wechat
from miniprogram_bridge.config import get_mp_settings
from miniprogram_bridge.models import MiniProgramBinding
from miniprogram_bridge.schemas import SubscribeTemplateOut, SubscriptionAnswerOut

Platform = Literal["wechat", "alipay"]


@dataclass
class LoginResult:
    pair: TokenPair | None
    account: Account | None
    bind_ticket: str | None = None
    ticket_expires_in: int | None = None
    new_account: bool = False


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _ticket_key(ticket: str) -> str:
    return "mp:ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def app_id_of(platform: Platform) -> str:
    s = get_mp_settings()
    return s.wechat_app_id if platform == "wechat" else s.alipay_app_id


async def _binding(
    session: AsyncSession, platform: Platform, openid: str, *, lock: bool = False
) -> MiniProgramBinding | None:
    q = select(MiniProgramBinding).where(
        MiniProgramBinding.platform == platform,
        MiniProgramBinding.app_id == app_id_of(platform),
        MiniProgramBinding.openid == openid,
    )
    if lock:
        q = q.with_for_update()
    return (await session.exec(q)).first()


async def _upsert(
    session: AsyncSession, platform: Platform, openid: str, *, unionid: str | None, session_key: str | None
) -> MiniProgramBinding:
    b = await _binding(session, platform, openid, lock=True)
    if b is None:
        b = MiniProgramBinding(platform=platform, app_id=app_id_of(platform), openid=openid)
    if unionid:
        b.unionid = unionid
    if session_key:
        b.session_key_enc = encrypt_str(session_key, aad=f"mp_session_key:{platform}:{openid}")
    session.add(b)
    await session.flush()
    return b


async def _finish(
    session: AsyncSession, account: Account, b: MiniProgramBinding, *, new: bool
) -> LoginResult:
    if not account.is_active:
        from app_api.platform.accounts.errors import AccountDisabled

        raise AccountDisabled()
    if account.is_staff:
        raise errors.StaffNotAllowed()
    now = utcnow()
    b.last_login_at = now
    account.last_login_at = now
    session.add(b)
    session.add(account)
    pair = await issue_pair(session, account.id)
    await audit.record(
        session,
        action="auth.login",
        actor_id=account.id,
        subject_type="account",
        subject_id=account.id,
        data={"method": f"miniprogram:{b.platform}"},
    )
    return LoginResult(pair=pair, account=account, new_account=new)


async def _login(
    session: AsyncSession, platform: Platform, openid: str, *, unionid: str | None, session_key: str | None
) -> LoginResult:
    b = await _upsert(session, platform, openid, unionid=unionid, session_key=session_key)
    if b.account_id is None and unionid:
        # The same person through another app of our open platform: the unionid already names them.
        sibling = (
            await session.exec(
                select(MiniProgramBinding).where(
                    MiniProgramBinding.unionid == unionid,
                    col(MiniProgramBinding.account_id).is_not(None),
                    MiniProgramBinding.id != b.id,
                )
            )
        ).first()
        if sibling is not None and sibling.account_id is not None:
            await _bind(session, b, sibling.account_id, via="unionid")
    if b.account_id is not None:
        account = await session.get(Account, b.account_id)
        if account is not None:
            return await _finish(session, account, b, new=False)
    ticket = secrets.token_urlsafe(24)
    ttl = get_mp_settings().bind_ticket_ttl_s
    r = await get_redis()
    await r.set(_ticket_key(ticket), b.id.encode(), ex=ttl)
    return LoginResult(pair=None, account=None, bind_ticket=ticket, ticket_expires_in=ttl)


async def _bind(session: AsyncSession, b: MiniProgramBinding, account_id: str, *, via: str) -> None:
    if b.account_id is not None and b.account_id != account_id:
        raise errors.OpenIdBoundElsewhere()
    other = (
        await session.exec(
            select(MiniProgramBinding).where(
                MiniProgramBinding.platform == b.platform,
                MiniProgramBinding.app_id == b.app_id,
                MiniProgramBinding.account_id == account_id,
                MiniProgramBinding.id != b.id,
            )
        )
    ).first()
    if other is not None:
        raise errors.AccountAlreadyBound()
    if b.account_id == account_id:
        return
    b.account_id, b.bound_at = account_id, utcnow()
    session.add(b)
    await session.flush()
    await audit.record(
        session,
        action="miniprogram.bound",
        actor_id=account_id,
        subject_type="miniprogram_binding",
        subject_id=b.id,
        data={"platform": b.platform, "via": via},
    )


async def wechat_login(session: AsyncSession, *, code: str) -> LoginResult:
    s = await wechat.code_to_session(code)
    return await _login(session, "wechat", s.openid, unionid=s.unionid, session_key=s.session_key)


async def alipay_login(session: AsyncSession, *, auth_code: str) -> LoginResult:
    user = await alipay.oauth_token(auth_code)
    return await _login(session, "alipay", user.open_id, unionid=None, session_key=None)


async def _take_ticket(session: AsyncSession, ticket: str) -> MiniProgramBinding:
    r = await get_redis()
    raw = await r.getdel(_ticket_key(ticket))
    b = await session.get(MiniProgramBinding, _text(raw)) if raw else None
    if b is None:
        raise errors.BindTicketInvalid()
    return b


async def _bind_phone(session: AsyncSession, b: MiniProgramBinding, phone: str, *, via: str) -> LoginResult:
    account, created = await accounts.get_or_create_resident(session, phone=phone)
    if account.is_staff:
        raise errors.StaffNotAllowed()
    await _bind(session, b, account.id, via=via)
    await audit.record(
        session,
        action="miniprogram.phone_bound",
        actor_id=account.id,
        subject_type="miniprogram_binding",
        subject_id=b.id,
        data={"phone": mask_phone(phone), "via": via},
    )
    return await _finish(session, account, b, new=created)


async def bind_phone_wechat(session: AsyncSession, *, bind_ticket: str, phone_code: str) -> LoginResult:
    """Finish a first WeChat login with WeChat's phone-number API."""
    r = await get_redis()
    raw = await r.get(_ticket_key(bind_ticket))
    if raw is None:
        raise errors.BindTicketInvalid()
    b = await session.get(MiniProgramBinding, _text(raw))
    if b is None or b.platform != "wechat":
        raise errors.BindTicketInvalid()
    # The phone code is checked first: a refused code leaves the ticket usable for the SMS route.
    phone = await wechat.phone_number(phone_code)
    b = await _take_ticket(session, bind_ticket)
    return await _bind_phone(session, b, phone, via="wechat_phone")


async def bind_phone_sms(session: AsyncSession, *, bind_ticket: str, phone: str, code: str) -> LoginResult:
    """Finish a first login with the platform's SMS code (``POST /auth/sms-codes`` sends it)."""
    r = await get_redis()
    if not await r.exists(_ticket_key(bind_ticket)):
        raise errors.BindTicketInvalid()
    await accounts.check_code(phone=phone, code=code, session=session)
    b = await _take_ticket(session, bind_ticket)
    return await _bind_phone(session, b, phone, via="sms")


async def bind_logged_in(
    session: AsyncSession, *, account_id: str, platform: Platform, code: str
) -> MiniProgramBinding:
    """A resident who registered elsewhere links their mini-program identity while logged in."""
    if platform == "wechat":
        s = await wechat.code_to_session(code)
        b = await _upsert(session, "wechat", s.openid, unionid=s.unionid, session_key=s.session_key)
    else:
        user = await alipay.oauth_token(code)
        b = await _upsert(session, "alipay", user.open_id, unionid=None, session_key=None)
    await _bind(session, b, account_id, via="logged_in")
    return b


async def unbind(session: AsyncSession, *, account_id: str, platform: Platform) -> bool:
    rows = (
        await session.exec(
            select(MiniProgramBinding).where(
                MiniProgramBinding.account_id == account_id, MiniProgramBinding.platform == platform
            )
        )
    ).all()
    for b in rows:
        b.account_id, b.bound_at, b.session_key_enc = None, None, None
        session.add(b)
        await audit.record(
            session,
            action="miniprogram.unbound",
            actor_id=account_id,
            subject_type="miniprogram_binding",
            subject_id=b.id,
            data={"platform": platform},
        )
    await session.flush()
    return bool(rows)


async def bindings_of(session: AsyncSession, account_id: str) -> list[MiniProgramBinding]:
    return list(
        (
            await session.exec(select(MiniProgramBinding).where(MiniProgramBinding.account_id == account_id))
        ).all()
    )


async def wechat_openid_of(session: AsyncSession, account_id: str) -> str | None:
    b = (
        await session.exec(
            select(MiniProgramBinding).where(
                MiniProgramBinding.account_id == account_id,
                MiniProgramBinding.platform == "wechat",
                MiniProgramBinding.app_id == get_mp_settings().wechat_app_id,
            )
        )
    ).first()
    return b.openid if b else None


def subscribe_templates() -> list[SubscribeTemplateOut]:
    """The configured WeChat templates of events that can be sent through WeChat, by event."""
    ids = get_mp_settings().wechat_template_ids
    tpls = notify.templates()
    return [
        SubscribeTemplateOut(event=key, template_id=tid, category=tpls[key].category)
        for key, tid in sorted(ids.items())
        if key in tpls and tpls[key].wechat_fields
    ]


async def record_subscriptions(
    session: AsyncSession, *, account_id: str, results: Mapping[str, str]
) -> list[SubscriptionAnswerOut]:
    """Record the answers to wx.requestSubscribeMessage (template id → accept / reject / ban / filter)."""
    by_id = {tid: key for key, tid in get_mp_settings().wechat_template_ids.items()}
    unknown = sorted(t for t in results if t not in by_id)
    if unknown:
        raise ValidationFailed("存在未知的订阅消息模板", unknown=unknown)
    out = []
    for tid, answer in results.items():
        if answer == "filter":  # hidden by WeChat's review: nothing was asked
            continue
        sub = await notify.record_subscription(
            session, account_id=account_id, channel="wechat", template=by_id[tid], accepted=answer == "accept"
        )
        out.append(
            SubscriptionAnswerOut(
                event=sub.template, remaining=sub.remaining, refused=sub.refused_at is not None
            )
        )
    return out
