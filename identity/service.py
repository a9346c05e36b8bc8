"""Identity: real-name (L2), face consent, liveness challenges, face verification (L3 and step-up),
an agent's in-person attestation, step-up tokens, and the resident's own view.

Services take the request's session and flush only. A failed attempt must leave its trace (the
attempt row, the audit line, the data-center access log) although the request fails: such failures
raise :class:`AttemptRecorded`, which the router answers as problem+json *without* raising, so the
request's transaction commits the trace and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import unicodedata
from typing import Any

import numpy as np
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.crypto import decrypt_bytes, encrypt_bytes, encrypt_str, mask_id_number, mask_name
from app_api.core.db import utcnow
from app_api.core.errors import AppError, IdentityLevelRequired
from app_api.core.redis import get_redis
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.accounts.service import find_by_phone, raise_level
from app_api.platform.consent import service as consent_service
from app_api.platform.consent.models import Consent
from app_api.platform.datahub import citizen_id
from app_api.platform.datahub.service import RecordNotFound, get_datahub, id_hash
from identity import errors
from identity.config import get_identity_settings
from identity.face.factory import get_verifier
from identity.face.liveness import STEP_LABELS_ZH, Step
from identity.face.verifier import Reference, VerificationResult, raise_for_result
from identity.models import IdentityAttempt, IdentityFaceProfile

REAL_NAME_PURPOSE = "identity.real_name"
REAL_NAME_SCOPES = ["population.basic"]
FACE_PURPOSE = "identity.face"
FACE_SCOPES = ["face.id_photo", "face.template", "population.basic", "population.photo"]
ATTESTATION_PURPOSE = "identity.agent_attestation"
L3_PURPOSE = "identity.l3"
# Step-up purposes are named by the package that needs them: "loan.apply", "fund.withdraw", ...
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_]{1,29}\.[a-z][a-z0-9_.]{1,29}$")
CHINA_TZ = dt.timezone(dt.timedelta(hours=8))

FACE_CONSENT_TEXT = (
    "我同意我家平台为核验本人身份采集和处理我的人脸信息：从城市数据中心调取我的身份证照片，"
    "与我现场拍摄的画面比对；比对所用的人脸特征和身份证照片加密保存，仅用于今后的身份核验。"
    "拍摄的画面不保存。我可以随时撤回同意，撤回后上述人脸数据立即删除。"
)
REAL_NAME_CONSENT_TEXT = "我同意我家平台向城市数据中心核验我的姓名和身份证号码，用于实名认证。"


class AttemptRecorded(Exception):
    """A failure whose record is in the session: answer ``error`` and commit."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.code)
        self.error = error


def _day() -> str:
    return utcnow().astimezone(CHINA_TZ).strftime("%Y%m%d")


def _seconds_to_midnight() -> int:
    now = utcnow().astimezone(CHINA_TZ)
    tomorrow = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((tomorrow - now).total_seconds()))


def normalize_name(name: str) -> str:
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", name))


async def _bump(key: str) -> tuple[int, int]:
    """Increment a per-day counter; returns (count, seconds until it resets)."""
    r = await get_redis()
    ttl = _seconds_to_midnight()
    async with r.pipeline(transaction=True) as p:
        p.incr(key)
        p.expire(key, ttl, nx=True)
        count, _ = await p.execute()
    return int(count), ttl


async def _add_attempt(session: AsyncSession, **fields: Any) -> IdentityAttempt:
    a = IdentityAttempt(**fields)
    session.add(a)
    await session.flush()
    return a


# --- L2: real name ----------------------------------------------------------------------------


async def verify_real_name(
    session: AsyncSession, *, account_id: str, name: str, id_number: str, agree: bool
) -> Account:
    """Match name and citizen ID number against the population records; raise the account to L2."""
    if not agree:
        raise errors.ConsentNotGiven()
    number = id_number.strip().upper()
    reason = citizen_id.problem(number)
    if reason:
        raise errors.IdNumberInvalid(reason)
    clean_name = normalize_name(name)
    account = await session.get(Account, account_id)
    if account is None:
        raise errors.ResidentNotFound()
    if account.id_number_hash:
        raise errors.RealNameAlreadyVerified(identity_level=account.identity_level)
    h = id_hash(number)
    other = (
        await session.exec(select(Account).where(Account.id_number_hash == h, Account.id != account_id))
    ).first()
    if other is not None:
        raise errors.IdNumberTaken()
    s = get_identity_settings()
    count, reset_in = await _bump(f"identity:rn:{account_id}:{_day()}")
    if count > s.real_name_attempts_per_day:
        raise errors.RealNameRateLimited(retry_after=reset_in)

    consent = await consent_service.grant(
        session,
        account_id=account_id,
        purpose=REAL_NAME_PURPOSE,
        scopes=REAL_NAME_SCOPES,
        text=REAL_NAME_CONSENT_TEXT,
    )
    try:
        rec = await get_datahub().person(
            session,
            id_number=number,
            accessor_id=account_id,
            purpose=REAL_NAME_PURPOSE,
            consent_id=consent.id,
            subject_account_id=account_id,
            scopes=REAL_NAME_SCOPES,
        )
    except RecordNotFound:
        rec = None
    if rec is None or normalize_name(rec.name) != clean_name:
        left = max(0, s.real_name_attempts_per_day - count)
        await _add_attempt(
            session,
            account_id=account_id,
            kind="real_name",
            outcome="failed",
            code=errors.RealNameMismatch.code,
            data={"id_number": mask_id_number(number), "attempts_left": left},
        )
        await audit.record(
            session,
            action="identity.real_name_failed",
            actor_id=account_id,
            subject_type="account",
            subject_id=account_id,
            data={"id_number": mask_id_number(number), "attempts_left": left},
        )
        # One answer for "no such number" and "another name": the endpoint must not tell which
        # ID numbers exist.
        raise AttemptRecorded(errors.RealNameMismatch(attempts_left=left))

    account.real_name_enc = encrypt_str(clean_name, aad="name")
    account.id_number_enc = encrypt_str(number, aad="id_number")
    account.id_number_hash = h
    session.add(account)
    await session.flush()
    await _add_attempt(
        session,
        account_id=account_id,
        kind="real_name",
        outcome="passed",
        data={"id_number": mask_id_number(number)},
    )
    await raise_level(session, account_id, 2, reason="real_name")
    return account


# --- face consent and face data ---------------------------------------------------------------


async def active_face_consent(session: AsyncSession, account_id: str) -> Consent | None:
    for c in await consent_service.list_for(session, account_id):
        if c.purpose == FACE_PURPOSE and consent_service.is_valid(c):
            return c
    return None


async def grant_face_consent(session: AsyncSession, *, account_id: str, agree: bool) -> Consent:
    if not agree:
        raise errors.ConsentNotGiven()
    existing = await active_face_consent(session, account_id)
    if existing is not None:
        return existing
    return await consent_service.grant(
        session, account_id=account_id, purpose=FACE_PURPOSE, scopes=FACE_SCOPES, text=FACE_CONSENT_TEXT
    )


async def delete_face_data(session: AsyncSession, *, account_id: str, reason: str) -> bool:
    """Delete the stored template and ID photo (if any); audited. Returns whether anything was stored."""
    result = await session.exec(
        delete(IdentityFaceProfile).where(col(IdentityFaceProfile.account_id) == account_id)
    )
    deleted = bool(result.rowcount)
    await session.flush()
    if deleted:
        await audit.record(
            session,
            action="identity.face_data_deleted",
            actor_id=account_id,
            subject_type="account",
            subject_id=account_id,
            data={"reason": reason},
        )
    return deleted


async def withdraw_face_consent(session: AsyncSession, *, account_id: str) -> dict[str, Any]:
    """Withdraw every live face consent and delete the face data that relied on it."""
    withdrawn = 0
    for c in await consent_service.list_for(session, account_id):
        if c.purpose == FACE_PURPOSE and c.withdrawn_at is None:
            await consent_service.withdraw(session, account_id=account_id, consent_id=c.id)
            withdrawn += 1
    deleted = await delete_face_data(session, account_id=account_id, reason="consent_withdrawn")
    return {"consents_withdrawn": withdrawn, "face_data_deleted": deleted}


async def face_profile(session: AsyncSession, account_id: str) -> IdentityFaceProfile | None:
    """The stored face data, if its consent still stands.

    A consent can also be withdrawn through the platform's own consent endpoint, which does not
    know about face data: the data goes the first time it is looked at afterwards (and in the
    daily sweep, ``identity.tasks``).
    """
    p = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == account_id))
    ).first()
    if p is None:
        return None
    c = await session.get(Consent, p.consent_id)
    if c is None or not consent_service.is_valid(c):
        await delete_face_data(session, account_id=account_id, reason="consent_withdrawn")
        return None
    return p


def _template_bytes(template: list[float]) -> bytes:
    return np.asarray(template, dtype=np.float32).tobytes()


def _template_of(blob: bytes) -> list[float]:
    return [float(x) for x in np.frombuffer(blob, dtype=np.float32)]


# --- challenges -------------------------------------------------------------------------------


def _fail_key(account_id: str) -> str:
    return f"identity:face_fail:{account_id}:{_day()}"


async def face_lock_state(account_id: str) -> tuple[int, int]:
    """(failures today, seconds until the counter resets)."""
    r = await get_redis()
    raw = await r.get(_fail_key(account_id))
    return (int(raw) if raw else 0), _seconds_to_midnight()


async def _check_not_locked(account_id: str) -> None:
    fails, reset_in = await face_lock_state(account_id)
    if fails >= get_identity_settings().face_failures_per_day:
        raise errors.FaceLocked(retry_after=reset_in, failures=fails)


def check_purpose(purpose: str) -> str:
    if purpose != L3_PURPOSE and not PURPOSE_RE.match(purpose):
        raise errors.PurposeInvalid(f"用途 {purpose[:60]!r} 不符合“包名.动作”格式", purpose=purpose[:60])
    return purpose


def _challenge_key(account_id: str, nonce: str) -> str:
    return f"identity:challenge:{account_id}:{hashlib.sha256(nonce.encode()).hexdigest()}"


async def issue_challenge(session: AsyncSession, *, principal: Principal, purpose: str) -> dict[str, Any]:
    """A random order of blink / turn left / turn right, with a nonce valid 2 minutes, usable once."""
    check_purpose(purpose)
    if principal.identity_level < 2:
        raise IdentityLevelRequired(2, principal.identity_level, "请先完成实名认证（L2）再进行人脸认证")
    if await active_face_consent(session, principal.id) is None:
        raise errors.FaceConsentRequired(consent_purpose=FACE_PURPOSE)
    await _check_not_locked(principal.id)
    s = get_identity_settings()
    count, reset_in = await _bump(f"identity:challenges:{principal.id}:{_day()}")
    if count > s.challenges_per_day:
        raise errors.ChallengeLimit(retry_after=reset_in)
    steps = list(Step)
    secrets.SystemRandom().shuffle(steps)
    nonce = secrets.token_urlsafe(24)
    r = await get_redis()
    payload = {"steps": [x.value for x in steps], "purpose": purpose, "issued_at": utcnow().isoformat()}
    await r.set(_challenge_key(principal.id, nonce), json.dumps(payload), ex=s.challenge_ttl_s)
    return {
        "challenge_id": nonce,
        "steps": payload["steps"],
        "instructions": [STEP_LABELS_ZH[x] for x in steps],
        "purpose": purpose,
        "expires_in": s.challenge_ttl_s,
        "frames": {
            "min": s.min_frames,
            "max": s.max_frames,
            "max_bytes_each": s.max_image_bytes,
            "max_bytes_total": s.max_frames_total_bytes,
            "max_pixels": s.max_image_pixels,
            "formats": ["image/jpeg", "image/png", "image/webp"],
        },
    }


async def consume_challenge(account_id: str, nonce: str) -> dict[str, Any]:
    """Take the challenge out of Redis (GETDEL: two uploads with one nonce cannot both get it)."""
    r = await get_redis()
    key = _challenge_key(account_id, nonce)
    # Claim first (SET NX): of two concurrent uploads exactly one claims; the other is told "used",
    # never "expired". Only the claimant takes the challenge itself.
    if not await r.set(key + ":used", b"1", ex=3600, nx=True):
        raise errors.ChallengeUsed()
    raw = await r.getdel(key)
    if raw is None:
        raise errors.ChallengeExpired()
    data: dict[str, Any] = json.loads(raw)
    return data


# --- face verification ------------------------------------------------------------------------


async def verify_face(
    session: AsyncSession, *, principal: Principal, challenge_id: str, frames: list[bytes]
) -> dict[str, Any]:
    """Check the frames against the challenge and the registry photo; on success L3 and a step-up token."""
    challenge = await consume_challenge(principal.id, challenge_id)
    purpose = str(challenge["purpose"])
    steps = [Step(x) for x in challenge["steps"]]
    await _check_not_locked(principal.id)
    account = await session.get(Account, principal.id)
    if account is None or not account.id_number:
        raise IdentityLevelRequired(2, principal.identity_level)
    consent = await active_face_consent(session, account.id)
    if consent is None:
        raise errors.FaceConsentRequired(consent_purpose=FACE_PURPOSE)
    s = get_identity_settings()
    verifier = get_verifier()

    async def refused(err: AppError, **data: Any) -> AttemptRecorded:
        await _add_attempt(
            session,
            account_id=account.id,
            kind="face",
            purpose=purpose,
            outcome="refused",
            code=err.code,
            verifier=verifier.name,
            data={"frames": len(frames), **data, **err.extra},
        )
        await audit.record(
            session,
            action="identity.face_refused",
            actor_id=account.id,
            subject_type="account",
            subject_id=account.id,
            data={"code": err.code, "purpose": purpose, "frames": len(frames), **err.extra},
        )
        return AttemptRecorded(err)

    for i, f in enumerate(frames[: s.max_frames]):
        if len(f) > s.max_image_bytes:
            raise await refused(
                errors.ImageTooLarge(f"第 {i + 1} 帧文件过大", frame=i, max_bytes=s.max_image_bytes)
            )

    profile = await face_profile(session, account.id)
    photo: bytes | None = None
    if profile is not None and profile.template_enc is not None and verifier.name == "local":
        reference = Reference(
            id_number=account.id_number,
            name=account.real_name or "",
            template=_template_of(decrypt_bytes(profile.template_enc, aad=f"face_template:{account.id}")),
        )
        ref_source = "stored_template"
    elif verifier.name == "local":
        try:
            rec = await get_datahub().person(
                session,
                id_number=account.id_number,
                accessor_id=account.id,
                purpose=FACE_PURPOSE,
                consent_id=consent.id,
                subject_account_id=account.id,
                scopes=["population.basic", "population.photo"],
            )
        except RecordNotFound:
            raise await refused(errors.ReferencePhotoUnusable("城市数据中心没有您的身份证照片")) from None
        if rec.photo is None:
            raise await refused(errors.ReferencePhotoUnusable("城市数据中心没有您的身份证照片"))
        photo = rec.photo
        reference = Reference(id_number=account.id_number, name=rec.name, photo=photo)
        ref_source = "registry_photo"
    else:
        reference = Reference(id_number=account.id_number, name=account.real_name or "")
        ref_source = "remote_service"

    try:
        result = await verifier.verify(steps=steps, frames=frames, reference=reference)
    except AppError as e:
        raise await refused(e, reference=ref_source) from None

    passed = result.passed
    await _add_attempt(
        session,
        account_id=account.id,
        kind="face",
        purpose=purpose,
        outcome="passed" if passed else "failed",
        code=result.code,
        verifier=result.verifier,
        distance=result.distance,
        tolerance=result.tolerance,
        similarity=result.similarity,
        data={
            **result.audit_data(),
            "steps": [x.value for x in steps],
            "reference": ref_source,
            "frames": len(frames),
            **result.figures,
        },
    )
    await audit.record(
        session,
        action="identity.face_verified" if passed else "identity.face_failed",
        actor_id=account.id,
        subject_type="account",
        subject_id=account.id,
        data={**result.audit_data(), "purpose": purpose, "reference": ref_source},
    )
    if not passed:
        fails, reset_in = await _bump(_fail_key(account.id))
        left = max(0, s.face_failures_per_day - fails)
        try:
            raise_for_result(result)
        except AppError as err:
            err.extra["attempts_left"] = left
            if left == 0:
                err.extra["locked_for_s"] = reset_in
            raise AttemptRecorded(err) from None

    if account.identity_level < 3:
        await raise_level(session, account.id, 3, reason="face")
    await _store_face_data(session, account_id=account.id, consent_id=consent.id, result=result, photo=photo)
    token = await issue_step_up(account.id, purpose)
    return {
        "identity_level": max(3, account.identity_level),
        "purpose": purpose,
        "step_up_token": token,
        "expires_in": s.step_up_ttl_s,
    }


async def _store_face_data(
    session: AsyncSession,
    *,
    account_id: str,
    consent_id: str,
    result: VerificationResult,
    photo: bytes | None,
) -> None:
    p = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == account_id))
    ).first()
    if p is None:
        p = IdentityFaceProfile(account_id=account_id, consent_id=consent_id, verifier=result.verifier)
    p.consent_id = consent_id
    p.verifier = result.verifier
    if result.template is not None:
        p.template_enc = encrypt_bytes(_template_bytes(result.template), aad=f"face_template:{account_id}")
    if photo is not None:
        p.id_photo_enc = encrypt_bytes(photo, aad=f"id_photo:{account_id}")
    p.updated_at = utcnow()
    session.add(p)
    await session.flush()


# --- step-up tokens ---------------------------------------------------------------------------


def _step_up_key(account_id: str, purpose: str, token: str) -> str:
    return f"identity:stepup:{account_id}:{purpose}:{hashlib.sha256(token.encode()).hexdigest()}"


async def issue_step_up(account_id: str, purpose: str) -> str:
    token = secrets.token_urlsafe(32)
    r = await get_redis()
    await r.set(_step_up_key(account_id, purpose, token), b"1", ex=get_identity_settings().step_up_ttl_s)
    return token


async def consume_step_up(account_id: str, purpose: str, token: str) -> bool:
    """True once: for this account, this purpose, within its 5 minutes. The key holds all three,
    so a token for another purpose or another account is simply not found (and not spent)."""
    r = await get_redis()
    return bool(await r.delete(_step_up_key(account_id, purpose, token)) == 1)


# --- agent attestation (the non-face route to L3) ---------------------------------------------


async def attest_in_person(
    session: AsyncSession,
    *,
    agent: Principal,
    resident_phone: str,
    id_number: str,
    name: str,
    document: str,
    resident_agreed: bool,
) -> IdentityAttempt:
    """An agent at a liaison station checked the resident's ID card in person: L3, recorded."""
    if not agent.station_id:
        raise errors.AgentStationRequired()
    if not resident_agreed:
        raise errors.ConsentNotGiven("请先让居民确认同意现场核验")
    number = id_number.strip().upper()
    reason = citizen_id.problem(number)
    if reason:
        raise errors.IdNumberInvalid(reason)
    resident = await find_by_phone(session, resident_phone)
    if resident is None:
        raise errors.ResidentNotFound()
    if resident.id == agent.id:
        raise errors.AttestationMismatch("代办员不能为自己核验")
    if resident.identity_level < 2 or not resident.id_number_hash:
        raise errors.ResidentNotRealName()
    if id_hash(number) != resident.id_number_hash or normalize_name(name) != (resident.real_name or ""):
        await _add_attempt(
            session,
            account_id=resident.id,
            kind="agent_attestation",
            outcome="failed",
            code=errors.AttestationMismatch.code,
            actor_id=agent.id,
            station_id=agent.station_id,
            data={"document": document, "id_number": mask_id_number(number)},
        )
        await audit.record(
            session,
            action="identity.attestation_failed",
            actor_id=agent.id,
            subject_type="account",
            subject_id=resident.id,
            data={"station_id": agent.station_id, "id_number": mask_id_number(number)},
        )
        raise AttemptRecorded(errors.AttestationMismatch())
    consent = await consent_service.grant(
        session,
        account_id=resident.id,
        purpose=ATTESTATION_PURPOSE,
        scopes=["identity.in_person_check"],
        text="我同意代办员在服务站现场核验我的身份证件，用于提升实名认证等级。",
        grantee=agent.id,
        granted_via="agent",
        actor_id=agent.id,
    )
    attempt = await _add_attempt(
        session,
        account_id=resident.id,
        kind="agent_attestation",
        outcome="passed",
        actor_id=agent.id,
        station_id=agent.station_id,
        data={"document": document, "consent_id": consent.id},
    )
    await audit.record(
        session,
        action="identity.attested_in_person",
        actor_id=agent.id,
        subject_type="account",
        subject_id=resident.id,
        data={"station_id": agent.station_id, "document": document, "name": mask_name(normalize_name(name))},
    )
    await raise_level(session, resident.id, 3, reason="agent_attestation", actor_id=agent.id)
    return attempt


# --- the resident's view ----------------------------------------------------------------------


async def overview(session: AsyncSession, *, account_id: str) -> dict[str, Any]:
    account = await session.get(Account, account_id)
    if account is None:
        raise errors.ResidentNotFound()
    profile = await face_profile(session, account_id)
    consents = [
        c for c in await consent_service.list_for(session, account_id) if c.purpose.startswith("identity.")
    ]
    attempts = (
        await session.exec(
            select(IdentityAttempt)
            .where(IdentityAttempt.account_id == account_id)
            .order_by(col(IdentityAttempt.created_at).desc())
            .limit(50)
        )
    ).all()
    fails, reset_in = await face_lock_state(account_id)
    limit = get_identity_settings().face_failures_per_day
    return {
        "identity_level": account.identity_level,
        "real_name": mask_name(account.real_name) if account.real_name else None,
        "id_number": mask_id_number(account.id_number) if account.id_number else None,
        "face": {
            "consented": await active_face_consent(session, account_id) is not None,
            "data_stored": profile is not None,
            "stored_at": profile.updated_at if profile else None,
            "failures_today": fails,
            "failures_allowed_per_day": limit,
            "locked": fails >= limit,
            "locked_for_s": reset_in if fails >= limit else 0,
        },
        "consents": [
            {
                "id": c.id,
                "purpose": c.purpose,
                "scopes": c.scopes,
                "text": c.text,
                "granted_via": c.granted_via,
                "granted_at": c.granted_at,
                "withdrawn_at": c.withdrawn_at,
                "active": consent_service.is_valid(c),
            }
            for c in consents
        ],
        "history": [
            {
                "id": a.id,
                "kind": a.kind,
                "purpose": a.purpose,
                "outcome": a.outcome,
                "code": a.code,
                "verifier": a.verifier,
                "station_id": a.station_id,
                "at": a.created_at,
            }
            for a in attempts
        ],
    }
