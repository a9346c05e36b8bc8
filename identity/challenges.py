"""Liveness challenges (a random order of moves under a single-use nonce, valid two minutes) and the
daily face lock. The steps are kept server-side under the nonce's hash: the upload names the nonce
only, and the capture is checked against the steps stored here, never against steps the client
sends."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import utcnow
from app_api.core.errors import IdentityLevelRequired
from app_api.core.redis import get_redis
from app_api.platform.accounts.principal import Principal
from identity import errors
from identity.attempts import bump, day, seconds_to_midnight
from identity.config import get_identity_settings
from identity.face.capture import CaptureLimits
from identity.face.liveness import STEP_LABELS_ZH, Step
from identity.face_data import active_face_consent
from identity.purposes import FACE_PURPOSE, check_purpose
from identity.schemas import ChallengeCapture, ChallengeFrames, ChallengeOut


@dataclass(frozen=True)
class IssuedChallenge:
    """A challenge as kept in Redis until its frames are uploaded."""

    steps: list[Step]
    purpose: str


def fail_key(account_id: str) -> str:
    """The counter of today's failed face checks, which locks face checks at the daily limit."""
    return f"identity:face_fail:{account_id}:{day()}"


async def face_lock_state(account_id: str) -> tuple[int, int]:
    """(failures today, seconds until the counter resets)."""
    r = await get_redis()
    raw = await r.get(fail_key(account_id))
    return (int(raw) if raw else 0), seconds_to_midnight()


async def check_not_locked(account_id: str) -> None:
    fails, reset_in = await face_lock_state(account_id)
    if fails >= get_identity_settings().face_failures_per_day:
        raise errors.FaceLocked(retry_after=reset_in, failures=fails)


def draw_steps() -> list[Step]:
    """The moves of a new challenge: all three, in an order from the system's CSPRNG."""
    steps = list(Step)
    secrets.SystemRandom().shuffle(steps)
    return steps


def _challenge_key(account_id: str, nonce: str) -> str:
    return f"identity:challenge:{account_id}:{hashlib.sha256(nonce.encode()).hexdigest()}"


async def issue_challenge(session: AsyncSession, *, principal: Principal, purpose: str) -> ChallengeOut:
    """A random order of blink / turn left / turn right, with a nonce valid 2 minutes, usable once."""
    check_purpose(purpose)
    if principal.identity_level < 2:
        raise IdentityLevelRequired(2, principal.identity_level, "请先完成实名认证（L2）再进行人脸认证")
    if await active_face_consent(session, principal.id) is None:
        raise errors.FaceConsentRequired(consent_purpose=FACE_PURPOSE)
    await check_not_locked(principal.id)
    s = get_identity_settings()
    count, reset_in = await bump(f"identity:challenges:{principal.id}:{day()}")
    if count > s.challenges_per_day:
        raise errors.ChallengeLimit(retry_after=reset_in)
    steps = draw_steps()
    nonce = secrets.token_urlsafe(24)
    r = await get_redis()
    payload = {"steps": [x.value for x in steps], "purpose": purpose, "issued_at": utcnow().isoformat()}
    await r.set(_challenge_key(principal.id, nonce), json.dumps(payload), ex=s.challenge_ttl_s)
    return ChallengeOut(
        challenge_id=nonce,
        steps=[x.value for x in steps],
        instructions=[STEP_LABELS_ZH[x] for x in steps],
        purpose=purpose,
        expires_in=s.challenge_ttl_s,
        frames=ChallengeFrames(
            min=s.min_frames,
            max=s.max_frames,
            max_bytes_each=s.max_image_bytes,
            max_bytes_total=s.max_frames_total_bytes,
            max_pixels=s.max_image_pixels,
            formats=["image/jpeg", "image/png", "image/webp"],
        ),
        capture=_capture_rules(),
    )


def _capture_rules() -> ChallengeCapture:
    lim = CaptureLimits()
    return ChallengeCapture(
        min_fps=lim.min_fps,
        max_fps=lim.max_fps,
        min_duration_ms=lim.min_duration_ms,
        max_duration_ms=lim.max_duration_ms,
        min_frames=lim.min_frames,
        max_frames=lim.max_frames,
        max_bytes=lim.max_bytes,
        max_pixels=lim.max_pixels,
        clip_formats=["video/mp4", "video/x-msvideo", "video/mpeg", "image/gif"],
        burst_formats=["image/jpeg", "image/png", "image/webp"],
    )


async def consume_challenge(account_id: str, nonce: str) -> IssuedChallenge:
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
    data = json.loads(raw)
    return IssuedChallenge(steps=[Step(x) for x in data["steps"]], purpose=str(data["purpose"]))
