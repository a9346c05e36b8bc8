"""证照夹: the resident's e-certificates, a verification code a counter checks, and shares.

A share lets one department or bank see one certificate, for a stated purpose, until a time. It is
a consent (``app_api.platform.consent``: purpose ``datahub.certificate_share``, the certificate as
its scope, the grantee as its grantee), so it shows with the resident's other consents and is
withdrawn the same way; sharing, withdrawing and each read by the grantee are in the audit chain.

A verification code is signed, not stored: ``<certificate id>.<expiry>.<signature>``, valid for
``VERIFY_TTL``, so a screenshot stops working soon and a counter learns no more than the masked
summary the verify endpoint shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.clock import china_today
from app_api.core.crypto import decrypt_str, mask_id_number
from app_api.core.db import utcnow
from app_api.core.redis import get_redis
from app_api.core.settings import get_settings
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.consent import service as consent
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.access_log import Actor, record_read
from app_api.platform.datahub.errors import (
    CertificateExpired,
    CertificateNotFound,
    CertificatePending,
    CertificateRevoked,
    ShareExpired,
    ShareExpiryInvalid,
    ShareNotFound,
    ShareRevoked,
    UnknownGrantee,
    VerifyCodeExpired,
    VerifyCodeInvalid,
    VerifyRateLimited,
)
from app_api.platform.datahub.models import ECertificate

SHARE_PURPOSE = "datahub.certificate_share"
VERIFY_TTL = dt.timedelta(minutes=10)
# The public verify endpoint per client address: a counter checks a handful of codes a minute;
# guessing codes (or scraping masked summaries) needs thousands.
VERIFY_PER_IP_PER_MINUTE = 30
SHARE_MAX = dt.timedelta(days=366)
GRANTEE_ROLES = {"department": "reviewer", "bank": "bank_officer"}
STATUS_TEXT = {"pending": "签发中", "valid": "有效", "revoked": "已撤销", "expired": "已过期"}


def status_of(row: ECertificate, today: dt.date | None = None) -> str:
    """pending (not in the library yet), revoked, expired (after its last valid day, China date), valid."""
    if row.revoked_at is not None:
        return "revoked"
    if row.state == "pending":
        return "pending"
    if row.valid_until is not None and row.valid_until < (today or china_today()):
        return "expired"
    return "valid"


def usable(row: ECertificate) -> None:
    """Refuse a certificate that cannot be shown to anyone else."""
    status = status_of(row)
    if status == "revoked":
        raise CertificateRevoked()
    if status == "expired":
        raise CertificateExpired()
    if status == "pending":
        raise CertificatePending()


async def _holder_hash(session: AsyncSession, account_id: str) -> str | None:
    account = await session.get(Account, account_id)
    return account.id_number_hash if account else None


async def mine(session: AsyncSession, account_id: str) -> list[ECertificate]:
    """The resident's certificates (by their verified ID number), newest first; none before real-name."""
    h = await _holder_hash(session, account_id)
    if h is None:
        return []
    q = (
        select(ECertificate)
        .where(ECertificate.holder_id_hash == h)
        .order_by(col(ECertificate.issued_on).desc(), col(ECertificate.id))
    )
    return list((await session.exec(q)).all())


async def owned(session: AsyncSession, account_id: str, certificate_id: str) -> ECertificate:
    """One of the resident's certificates; another holder's is "not found", never shown."""
    row = await session.get(ECertificate, certificate_id)
    h = await _holder_hash(session, account_id)
    if row is None or h is None or row.holder_id_hash != h:
        raise CertificateNotFound()
    return row


def _sign(certificate_id: str, expires: int) -> str:
    key = get_settings().secret_key.get_secret_value().encode()
    return hmac.new(key, f"cert-verify:{certificate_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:20]


def verify_code(row: ECertificate, now: dt.datetime | None = None) -> tuple[str, dt.datetime] | None:
    """A fresh code for a valid certificate and when it stops working; None for any other."""
    if status_of(row) != "valid":
        return None
    expires = int(((now or utcnow()) + VERIFY_TTL).timestamp())
    return f"{row.id}.{expires}.{_sign(row.id, expires)}", dt.datetime.fromtimestamp(expires, dt.UTC)


def _masked_no(cert_no: str) -> str:
    return cert_no if len(cert_no) <= 8 else f"{cert_no[:4]}{'*' * (len(cert_no) - 8)}{cert_no[-4:]}"


async def limit_verify(client_ip: str) -> None:
    """Count one verification from ``client_ip`` in the current minute; refuse past the limit.

    A fixed window in Redis (INCR + EXPIRE NX in one transaction), like the SMS-code limits: Redis
    holds no truth here, so a wiped Redis only restarts the window."""
    r = await get_redis()
    window = int(utcnow().timestamp()) // 60
    key = f"datahub:verify:{client_ip}:{window}"
    async with r.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, 60, nx=True)
        count, _ = await p.execute()
    if int(count) > VERIFY_PER_IP_PER_MINUTE:
        raise VerifyRateLimited(retry_after=60 - int(utcnow().timestamp()) % 60)


async def check(session: AsyncSession, code: str, now: dt.datetime | None = None) -> dict[str, object]:
    """What a counter may learn from a code: the certificate's status and a masked summary."""
    parts = code.strip().split(".")
    if len(parts) != 3 or not parts[1].isdigit():
        raise VerifyCodeInvalid()
    cid, expires_s, sig = parts
    expires = int(expires_s)
    if not hmac.compare_digest(sig.encode(), _sign(cid, expires).encode()):
        raise VerifyCodeInvalid()
    if expires < (now or utcnow()).timestamp():
        raise VerifyCodeExpired()
    row = await session.get(ECertificate, cid)
    if row is None:
        raise VerifyCodeInvalid()
    status = status_of(row)
    holder = decrypt_str(row.holder_id_enc, aad="id_number") if row.holder_id_enc else None
    return {
        "status": status,
        "status_text": STATUS_TEXT[status],
        "title": row.title,
        "issuer": row.issuer,
        "cert_no": _masked_no(row.cert_no),
        "holder_id_number": mask_id_number(holder) if holder else None,
        "issued_on": row.issued_on,
        "valid_until": row.valid_until,
    }


def grantee_key(kind: str, grantee_id: str) -> str:
    return f"{kind}:{grantee_id}"


async def _known_grantee(session: AsyncSession, kind: str, grantee_id: str) -> bool:
    """A department with an active reviewer, a bank with an active officer: someone there can use it."""
    role = GRANTEE_ROLES.get(kind)
    if role is None:
        return False
    column = Account.department if kind == "department" else Account.institution_id
    rows = (
        await session.exec(select(Account.roles).where(column == grantee_id, col(Account.is_active)))
    ).all()
    return any(role in roles for roles in rows)


def share_status(c: Consent, now: dt.datetime | None = None) -> str:
    if c.withdrawn_at is not None:
        return "revoked"
    if c.expires_at is not None and c.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def certificate_of_share(c: Consent) -> str | None:
    return next((s.split(":", 1)[1] for s in c.scopes if s.startswith("certificate:")), None)


async def share(
    session: AsyncSession,
    *,
    account_id: str,
    row: ECertificate,
    grantee_kind: str,
    grantee_id: str,
    purpose: str,
    expires_at: dt.datetime,
) -> Consent:
    """Share one of the resident's certificates with a department or bank until ``expires_at``."""
    usable(row)
    now = utcnow()
    if expires_at.tzinfo is None:
        raise ShareExpiryInvalid("共享截止时间须带时区")
    if expires_at <= now:
        raise ShareExpiryInvalid("共享截止时间须晚于现在")
    if expires_at - now > SHARE_MAX:
        raise ShareExpiryInvalid("共享期限最长一年")
    if not await _known_grantee(session, grantee_kind, grantee_id):
        raise UnknownGrantee(grantee_kind=grantee_kind, grantee_id=grantee_id)
    c = await consent.grant(
        session,
        account_id=account_id,
        purpose=SHARE_PURPOSE,
        scopes=[f"certificate:{row.id}"],
        text=purpose,
        grantee=grantee_key(grantee_kind, grantee_id),
        ttl=expires_at - now,
    )
    await audit.record(
        session,
        action="datahub.certificate_shared",
        actor_id=account_id,
        subject_type="datahub_certificate",
        subject_id=row.id,
        data={"consent_id": c.id, "grantee": c.grantee, "purpose": purpose, "expires_at": c.expires_at},
    )
    return c


async def shares_of(session: AsyncSession, account_id: str, certificate_id: str) -> list[Consent]:
    scope = f"certificate:{certificate_id}"
    rows = (
        await session.exec(
            select(Consent)
            .where(Consent.account_id == account_id, Consent.purpose == SHARE_PURPOSE)
            .order_by(col(Consent.granted_at).desc())
        )
    ).all()
    return [c for c in rows if scope in c.scopes]


async def withdraw_share(
    session: AsyncSession, *, account_id: str, certificate_id: str, share_id: str
) -> Consent:
    c = await session.get(Consent, share_id)
    if (
        c is None
        or c.account_id != account_id
        or c.purpose != SHARE_PURPOSE
        or certificate_of_share(c) != certificate_id
    ):
        raise ShareNotFound()
    if share_status(c) == "expired":
        raise ShareExpired("该共享已过期，无需撤回")
    if c.withdrawn_at is None:
        c = await consent.withdraw(session, account_id=account_id, consent_id=share_id)
        await audit.record(
            session,
            action="datahub.certificate_share_withdrawn",
            actor_id=account_id,
            subject_type="datahub_certificate",
            subject_id=certificate_id,
            data={"consent_id": c.id, "grantee": c.grantee},
        )
    return c


async def read_share(
    session: AsyncSession, *, principal: Principal, share_id: str
) -> tuple[Consent, ECertificate]:
    """The grantee's officer opens a share: only their own department's or bank's, while it lives;
    the read is logged for the resident (``/me/data-access``) and in the audit chain."""
    c = await session.get(Consent, share_id)
    mine_as = {
        grantee_key("department", principal.department)
        if principal.has("reviewer") and principal.department
        else "",
        grantee_key("bank", principal.institution_id)
        if principal.has("bank_officer") and principal.institution_id
        else "",
    } - {""}
    cid = certificate_of_share(c) if c is not None else None
    if c is None or c.purpose != SHARE_PURPOSE or c.grantee not in mine_as or cid is None:
        raise ShareNotFound()
    status = share_status(c)
    if status == "revoked":
        raise ShareRevoked()
    if status == "expired":
        raise ShareExpired()
    row = await session.get(ECertificate, cid)
    if row is None:
        raise ShareNotFound()
    usable(row)
    # The share-read audit entry below is this read's entry in the chain.
    actor = Actor.of(principal, subject_account_id=c.account_id)
    await record_read(
        session,
        actor=actor,
        subject_account_id=c.account_id,
        subject_hash=row.holder_id_hash,
        record_type="certificate",
        purpose=SHARE_PURPOSE,
        consent_id=c.id,
        fields=list(c.scopes),
        audited=False,
    )
    await audit.record(
        session,
        action="datahub.certificate_share_read",
        actor_id=principal.id,
        subject_type="datahub_certificate",
        subject_id=row.id,
        data={
            "consent_id": c.id,
            "grantee": c.grantee,
            "subject_account_id": c.account_id,
            "actor_kind": actor.kind,
            "actor_org": actor.org,
        },
    )
    return c, row
