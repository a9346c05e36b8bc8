"""Face verification: the challenge's capture against the reference face; L3 and a step-up token on
success. Every outcome is recorded (attempt row and audit line), refusals and failures included.

The local verifier needs one capture (a clip, or a burst with a timestamp per frame) and checks it
in the face engine's pool (``identity.face.capture``); stills without timestamps are refused
(``identity.capture_required``). A remote verifier (a licensed service doing its own liveness)
gets the burst's frames as before. The request awaits the pool's job (seconds): the event loop is
free meanwhile, and the face work runs in the pool's processes, not in the api's.
"""

from __future__ import annotations

import json
import math
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app_api.core.db import new_id
from app_api.core.errors import AppError, IdentityLevelRequired
from app_api.platform import audit
from app_api.platform.accounts.models import Account
from app_api.platform.accounts.principal import Principal
from app_api.platform.accounts.service import raise_level
from app_api.platform.consent.models import Consent
from app_api.platform.datahub.service import RecordNotFound, get_datahub
from identity import errors
from identity.attempts import AttemptRecorded, add_attempt, bump
from identity.challenges import check_not_locked, consume_challenge, fail_key
from identity.config import get_identity_settings
from identity.face.capture import CaptureInvalid, CaptureLimits, CaptureTooLarge
from identity.face.factory import get_verifier, may_grant_l3
from identity.face.verifier import (
    CaptureUpload,
    FaceVerifier,
    LocalFaceVerifier,
    Reference,
    VerificationResult,
    raise_for_result,
)
from identity.face_data import active_face_consent, face_profile, registry_template, store_face_data
from identity.models import seal_scores
from identity.purposes import FACE_PURPOSE
from identity.schemas import FaceVerifiedOut
from identity.step_up import issue_step_up


class _Refusal:
    """Records a refused upload (bad frames, no usable reference) and makes its AttemptRecorded."""

    def __init__(
        self, session: AsyncSession, *, account_id: str, purpose: str, verifier: str, frames: int
    ) -> None:
        self.session, self.account_id, self.purpose = session, account_id, purpose
        self.verifier, self.frames = verifier, frames

    async def __call__(self, err: AppError, **data: Any) -> AttemptRecorded:
        await add_attempt(
            self.session,
            account_id=self.account_id,
            kind="face",
            purpose=self.purpose,
            outcome="refused",
            code=err.code,
            verifier=self.verifier,
            data={"frames": self.frames, **data, **err.extra},
        )
        await audit.record(
            self.session,
            action="identity.face_refused",
            actor_id=self.account_id,
            subject_type="account",
            subject_id=self.account_id,
            data={"code": err.code, "purpose": self.purpose, "frames": self.frames, **err.extra},
        )
        return AttemptRecorded(err)


async def _reference(
    session: AsyncSession,
    *,
    account: Account,
    id_number: str,
    consent: Consent,
    verifier: FaceVerifier,
    refused: _Refusal,
) -> tuple[Reference, str, bytes | None]:
    """The face to compare with, where it came from, and the registry photo.

    Always the registry's ID photo, fetched afresh for every check (its encoding is reused while the
    registry still holds the same photo); never a face from an earlier capture, so that one spoof
    that got through cannot become the reference for the next. A remote service holds the
    authoritative photo itself.
    """
    # Looked at for every verifier: face data whose consent has gone is deleted here.
    profile = await face_profile(session, account.id)
    if verifier.name != "local":
        return Reference(id_number=id_number, name=account.real_name or ""), "remote_service", None
    try:
        rec = await get_datahub().person(
            session,
            id_number=id_number,
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
    template = registry_template(profile, rec.photo)
    reference = Reference(id_number=id_number, name=rec.name, photo=rec.photo, template=template)
    return reference, "registry_photo", rec.photo


# What a check measured: kept only encrypted (``IdentityAttempt.scores_enc``), out of the audit chain.
_SCORE_KEYS = ("distance", "similarity", "max_frame_distance")


def _split(result: VerificationResult) -> tuple[dict[str, Any], dict[str, Any]]:
    """(outcome fields kept in plain, measured scores kept encrypted) of a verifier's result."""
    audit_data = result.audit_data()
    plain = {k: v for k, v in audit_data.items() if k not in _SCORE_KEYS}
    scores = {k: audit_data[k] for k in _SCORE_KEYS if audit_data.get(k) is not None}
    if result.distance is not None:
        scores["distance"] = result.distance  # unrounded: the exact figure compared with the tolerance
    if result.frame_distances:
        scores["frame_distances"] = [round(d, 4) for d in result.frame_distances]
    scores.update(result.figures)
    return plain, scores


def _numbers(raw: str | None, name: str) -> list[Any] | None:
    """A JSON array from a form field (None when the field was not sent)."""
    if raw is None or raw == "":
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        raise CaptureInvalid(f"{name} 不是 JSON 数组", field=name) from None
    if not isinstance(value, list):
        raise CaptureInvalid(f"{name} 不是 JSON 数组", field=name)
    return value


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def parse_capture(
    *,
    clip: bytes | None,
    frames: list[bytes],
    timestamps_ms: str | None,
    step_windows_ms: str | None,
    steps: int,
) -> CaptureUpload:
    """The upload as one :class:`CaptureUpload`; malformed fields raise ``identity.capture_invalid``."""
    if clip is not None and frames:
        raise CaptureInvalid("请只上传视频（clip）或连拍画面（frames）之一")
    ts = _numbers(timestamps_ms, "timestamps_ms")
    if ts is not None:
        if clip is not None:
            raise CaptureInvalid("视频自带时间戳，不应另附 timestamps_ms", field="timestamps_ms")
        if not all(_finite(x) for x in ts):
            raise CaptureInvalid("timestamps_ms 应为数字（毫秒）", field="timestamps_ms")
        if len(ts) != len(frames):
            raise CaptureInvalid(
                f"连拍 {len(frames)} 帧，时间戳 {len(ts)} 个", frames=len(frames), timestamps=len(ts)
            )
    windows = _numbers(step_windows_ms, "step_windows_ms")
    if windows is not None:
        ok = len(windows) == steps and all(
            isinstance(w, list) and len(w) == 2 and all(_finite(x) for x in w) and w[0] <= w[1]
            for w in windows
        )
        if not ok:
            raise CaptureInvalid(
                f"step_windows_ms 应为 {steps} 个 [开始, 结束] 毫秒区间", field="step_windows_ms"
            )
    if clip is None and not frames:
        raise CaptureInvalid("没有上传视频或连拍画面")
    return CaptureUpload(
        clip=clip,
        burst=tuple(frames),
        timestamps_ms=None if ts is None else [float(x) for x in ts],
        step_windows_ms=None if windows is None else [(float(a), float(b)) for a, b in windows],
    )


async def verify_face(
    session: AsyncSession,
    *,
    principal: Principal,
    challenge_id: str,
    clip: bytes | None = None,
    frames: list[bytes] | None = None,
    timestamps_ms: str | None = None,
    step_windows_ms: str | None = None,
) -> FaceVerifiedOut:
    """Check the capture against the challenge and the registry photo; on success L3 and a step-up
    token. ``timestamps_ms`` and ``step_windows_ms`` are the form fields as sent (JSON arrays)."""
    frames = frames or []
    challenge = await consume_challenge(principal.id, challenge_id)
    purpose, steps = challenge.purpose, challenge.steps
    await check_not_locked(principal.id)
    account = await session.get(Account, principal.id)
    if account is None or not account.id_number:
        raise IdentityLevelRequired(2, principal.identity_level)
    consent = await active_face_consent(session, account.id)
    if consent is None:
        raise errors.FaceConsentRequired(consent_purpose=FACE_PURPOSE)
    s = get_identity_settings()
    verifier = get_verifier()
    refused = _Refusal(
        session, account_id=account.id, purpose=purpose, verifier=verifier.name, frames=len(frames)
    )
    lim = CaptureLimits()
    if clip is not None and len(clip) > lim.max_bytes:
        raise await refused(CaptureTooLarge("视频文件过大", max_bytes=lim.max_bytes))
    for i, f in enumerate(frames[: lim.max_frames]):
        if len(f) > s.max_image_bytes:
            raise await refused(
                errors.ImageTooLarge(f"第 {i + 1} 帧文件过大", frame=i, max_bytes=s.max_image_bytes)
            )
    try:
        capture = parse_capture(
            clip=clip,
            frames=frames,
            timestamps_ms=timestamps_ms,
            step_windows_ms=step_windows_ms,
            steps=len(steps),
        )
    except AppError as e:
        raise await refused(e) from None
    local = isinstance(verifier, LocalFaceVerifier)
    if local and not capture.is_capture:
        raise await refused(
            errors.CaptureRequired(
                "单独拍摄的照片无法证明活体：请上传一段视频（clip），或连拍画面并附每帧的拍摄时间（timestamps_ms）"
            )
        )
    if not local and capture.clip is not None:
        raise await refused(
            CaptureInvalid("本部署的实人认证服务接受连拍画面（frames），暂不接受视频文件", field="clip")
        )

    reference, ref_source, photo = await _reference(
        session,
        account=account,
        id_number=account.id_number,
        consent=consent,
        verifier=verifier,
        refused=refused,
    )
    try:
        if isinstance(verifier, LocalFaceVerifier):
            result = await verifier.verify_capture(steps=steps, capture=capture, reference=reference)
        else:
            result = await verifier.verify(steps=steps, frames=frames, reference=reference)
    except AppError as e:
        raise await refused(e, reference=ref_source) from None

    passed = result.passed
    # A deployment names the verifiers whose pass is worth L3 (WOJIA_IDENTITY_L3_VERIFIERS): a pass of
    # another is recorded, but neither raises the level nor stands for a step-up.
    certified = may_grant_l3(result.verifier)
    plain, scores = _split(result)
    attempt_id = new_id()
    await add_attempt(
        session,
        id=attempt_id,
        account_id=account.id,
        kind="face",
        purpose=purpose,
        outcome=("passed" if certified else "refused") if passed else "failed",
        code=result.code if certified or not passed else errors.VerifierNotCertified.code,
        verifier=result.verifier,
        tolerance=result.tolerance,
        scores_enc=seal_scores(attempt_id, scores),
        data={
            **plain,
            "steps": [x.value for x in steps],
            "reference": ref_source,
            "reference_encoding_kept": reference.template is not None,
            "frames": len(frames),
            "capture": "clip" if capture.clip is not None else "burst" if capture.is_capture else "stills",
        },
    )
    await audit.record(
        session,
        action="identity.face_verified" if passed and certified else "identity.face_failed",
        actor_id=account.id,
        subject_type="account",
        subject_id=account.id,
        data={**plain, "purpose": purpose, "reference": ref_source, "attempt_id": attempt_id},
    )
    if not passed:
        fails, reset_in = await bump(fail_key(account.id))
        left = max(0, s.face_failures_per_day - fails)
        try:
            raise_for_result(result)
        except AppError as err:
            err.extra["attempts_left"] = left
            if left == 0:
                err.extra["locked_for_s"] = reset_in
            raise AttemptRecorded(err) from None

    if not certified:
        raise AttemptRecorded(
            errors.VerifierNotCertified(
                "该部署未认可本核验方式用于三级实名认证：请使用经认证的人脸核验服务，"
                "或到代办点、政务服务窗口当面核验",
                verifier=result.verifier,
            )
        )
    if account.identity_level < 3:
        await raise_level(session, account.id, 3, reason="face")
    # The registry photo's encoding is kept, never the capture's (result.template).
    template = None
    if photo is not None and isinstance(verifier, LocalFaceVerifier):
        template = list(reference.template or await verifier.reference_template(reference))
    await store_face_data(
        session,
        account_id=account.id,
        consent_id=consent.id,
        verifier=result.verifier,
        template=template,
        photo=photo,
    )
    token = await issue_step_up(account.id, purpose)
    return FaceVerifiedOut(
        identity_level=max(3, account.identity_level),
        purpose=purpose,
        step_up_token=token,
        expires_in=s.step_up_ttl_s,
    )
