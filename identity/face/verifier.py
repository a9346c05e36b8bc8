"""The verifier contract: did the person in these frames do the challenge, and are they the person
the population record says?

Two implementations: :class:`LocalFaceVerifier` (face_recognition in the face engine's process
pool) and :class:`identity.face.remote.RemoteRealPersonVerifier` (a licensed real-person service,
实人认证, which holds the authoritative photo itself, reached through this project's proposed
protocol, ``docs/adapters/realperson.yaml``). A deployment picks one with
``WOJIA_IDENTITY_VERIFIER``.

Contract: bad input (unreadable image, no face, two faces, too many frames) raises the matching
``identity.*`` error; a completed check returns a :class:`VerificationResult`, passed or not,
with the figures the audit log keeps.

The local verifier judges liveness on **one capture** (:class:`CaptureUpload`: a clip, or a burst
with a timestamp per frame; ``LocalFaceVerifier.verify_capture``, ``identity.face.capture``). Its
stills judge (``verify``: landmark moves across separately taken photos) cannot tell a doctored
photo from a face (issue 13) and never serves the deployment's own check: the verification flow
refuses stills for the local verifier (``identity.capture_required``). It stays only as the
decision of the development stand-in for a licensed real-person service (``identity.sandbox.
realperson``), whose protocol takes stills and whose real counterpart does its own liveness.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app_api.core.errors import AppError
from identity import errors
from identity.face.capture import (
    CaptureLivenessFailed,
    CaptureMultipleFaces,
    CaptureNoFace,
    CaptureNotContinuous,
    CaptureOutcome,
)
from identity.face.engine import FaceAnalysis, face_distance
from identity.face.liveness import LivenessConfig, Step, check_liveness
from identity.face.pool import FaceEngine


@dataclass(frozen=True)
class Reference:
    """Whom the frames must show: the population record's person.

    ``photo`` (the registry's ID photo) or ``template`` (a stored encoding) is what the local
    verifier compares with; a remote service looks its own authoritative photo up by number and name.
    """

    id_number: str
    name: str
    photo: bytes | None = None
    template: Sequence[float] | None = None


@dataclass(frozen=True)
class CaptureUpload:
    """One capture of the challenge: a clip, or a burst of frames with the capture time of each
    (ms, the camera's clock), and optionally the time window (ms from the first frame) in which the
    client showed each step's instruction."""

    clip: bytes | None = None
    burst: Sequence[bytes] = ()
    timestamps_ms: Sequence[float] | None = None
    step_windows_ms: Sequence[tuple[float, float]] | None = None

    @property
    def is_capture(self) -> bool:
        """A clip or a timed burst (stills without timestamps are not a capture)."""
        return self.clip is not None or self.timestamps_ms is not None

    @property
    def frames(self) -> int:
        return len(self.burst)


# What a capture's refusal says about the person in front of the camera (a verdict counted towards
# the day's failures), as against a refusal of the upload itself (frame rate, size, format: a
# recorded refusal only). Not one face track covers a collage, alternating photos, a photo moved
# about and a change of person.
CAPTURE_VERDICTS = frozenset(
    {CaptureNotContinuous.code, CaptureMultipleFaces.code, CaptureNoFace.code, CaptureLivenessFailed.code}
)


@dataclass
class VerificationResult:
    passed: bool
    verifier: str
    # Set when not passed: "identity.liveness_failed" | "identity.face_mismatch" |
    # "identity.frames_not_same_person".
    code: str | None = None
    detail: str = ""
    # Local: Euclidean distance of the best frame to the reference (lower is closer).
    distance: float | None = None
    tolerance: float | None = None
    # Remote: the service's similarity score (0-100, higher is closer).
    similarity: float | None = None
    liveness_passed: bool = False
    failed_step: str | None = None
    best_frame: int | None = None
    frame_distances: list[float] = field(default_factory=list)
    # The best frame's encoding (local only): stored encrypted when the resident consented.
    template: list[float] | None = None
    elapsed_ms: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)

    def audit_data(self) -> dict[str, Any]:
        """What the audit log keeps: figures and outcome, never images or templates."""
        return {
            "verifier": self.verifier,
            "passed": self.passed,
            "code": self.code,
            "distance": None if self.distance is None else round(self.distance, 4),
            "tolerance": self.tolerance,
            "similarity": self.similarity,
            "liveness_passed": self.liveness_passed,
            "failed_step": self.failed_step,
            "best_frame": self.best_frame,
            "max_frame_distance": round(max(self.frame_distances), 4) if self.frame_distances else None,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


class FaceVerifier(Protocol):
    name: str

    async def verify(
        self, *, steps: Sequence[Step], frames: Sequence[bytes], reference: Reference
    ) -> VerificationResult: ...


def check_frame_count(
    frames: Sequence[bytes], *, min_frames: int, max_frames: int, max_total_bytes: int
) -> None:
    if len(frames) > max_frames:
        raise errors.TooManyFrames(f"最多上传 {max_frames} 帧画面", max_frames=max_frames)
    if len(frames) < min_frames:
        raise errors.TooFewFrames(f"至少需要 {min_frames} 帧画面", min_frames=min_frames)
    total = sum(len(f) for f in frames)
    if total > max_total_bytes:
        raise errors.ImageTooLarge(
            f"画面总大小超过 {max_total_bytes // (1024 * 1024)} MB", max_bytes=max_total_bytes
        )


_PROBLEMS: dict[str, type[AppError]] = {
    "image_invalid": errors.ImageInvalid,
    "image_too_large": errors.ImageTooLarge,
    "image_too_many_pixels": errors.ImageTooManyPixels,
    "no_face": errors.NoFace,
    "multiple_faces": errors.MultipleFaces,
}
_FRAME_DETAIL = {
    "image_invalid": "第 {n} 帧无法识别为图片",
    "image_too_large": "第 {n} 帧文件过大",
    "image_too_many_pixels": "第 {n} 帧分辨率过高",
    "no_face": "第 {n} 帧未检测到人脸",
    "multiple_faces": "第 {n} 帧检测到多张人脸",
}


def raise_for_frame(analysis: FaceAnalysis, index: int) -> None:
    """Raise the ``identity.*`` error of an unusable frame (index is 0-based; residents count from 1)."""
    if analysis.problem is not None:
        cls = _PROBLEMS[analysis.problem]
        raise cls(_FRAME_DETAIL[analysis.problem].format(n=index + 1), frame=index)


class LocalFaceVerifier:
    """face_recognition (dlib HOG + 128-d encodings) with landmark challenge-response liveness."""

    name = "local"

    def __init__(
        self,
        engine: FaceEngine,
        *,
        tolerance: float = 0.5,
        frame_tolerance: float = 0.5,
        liveness: LivenessConfig | None = None,
        min_frames: int = 4,
        max_frames: int = 16,
        max_total_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.engine = engine
        self.tolerance = tolerance
        self.frame_tolerance = frame_tolerance
        self.liveness = liveness or LivenessConfig()
        self.min_frames, self.max_frames, self.max_total_bytes = min_frames, max_frames, max_total_bytes

    async def reference_template(self, reference: Reference) -> list[float]:
        if reference.template is not None:
            return list(reference.template)
        if reference.photo is None:
            raise errors.ReferencePhotoUnusable("没有可用于比对的登记照片")
        ref = await self.engine.analyse(reference.photo)
        if not ref.ok:
            raise errors.ReferencePhotoUnusable(f"登记照片不可用：{ref.problem}", reason=ref.problem)
        return ref.encoding

    async def verify(
        self, *, steps: Sequence[Step], frames: Sequence[bytes], reference: Reference
    ) -> VerificationResult:
        t0 = time.perf_counter()
        check_frame_count(
            frames,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            max_total_bytes=self.max_total_bytes,
        )
        # Frames and the reference are analysed concurrently across the pool's workers.
        analyses_task = asyncio.ensure_future(self.engine.analyse_many(frames))
        try:
            ref_encoding = await self.reference_template(reference)
        finally:
            analyses = await analyses_task
        for i, a in enumerate(analyses):
            raise_for_frame(a, i)
        return self.judge(steps, analyses, ref_encoding, t0=t0)

    async def verify_capture(
        self, *, steps: Sequence[Step], capture: CaptureUpload, reference: Reference
    ) -> VerificationResult:
        """One capture against the challenge (continuity, 3D turns, blinks: ``capture_job`` in the
        pool), then its best frame against the reference. A refused upload raises its
        ``identity.capture_*`` error; a capture that is not one live track, or not the asked moves,
        or not the reference's person returns a failed result."""
        t0 = time.perf_counter()
        if not capture.is_capture:
            raise errors.CaptureRequired(
                "本核验方式需要一次连续拍摄：上传视频（clip），或连拍画面并附每帧的拍摄时间（timestamps_ms）"
            )
        outcome_task = asyncio.ensure_future(
            self.engine.capture(
                [s.value for s in steps],
                clip=capture.clip,
                burst=None if capture.clip is not None else list(capture.burst),
                timestamps_ms=capture.timestamps_ms,
                step_windows_ms=capture.step_windows_ms,
            )
        )
        try:
            ref_encoding = await self.reference_template(reference)
        finally:
            outcome = await outcome_task
        return self.judge_capture(outcome, ref_encoding, t0=t0)

    def judge_capture(
        self, outcome: CaptureOutcome, ref_encoding: Sequence[float], *, t0: float
    ) -> VerificationResult:
        """The decision from a capture's outcome: refused upload (raised), broken track or missing
        move (failed), the best frame against the reference."""
        res = VerificationResult(
            passed=False,
            verifier=self.name,
            tolerance=self.tolerance,
            liveness_passed=outcome.passed,
            failed_step=outcome.failed_step,
            best_frame=outcome.best_frame if outcome.passed else None,
            figures={"capture": outcome.figures} if outcome.figures else {},
        )
        if outcome.problem is not None:
            code, detail, extra = outcome.problem
            if code not in CAPTURE_VERDICTS:
                outcome.raise_problem()
            res.code, res.detail = code, detail
            res.figures["capture_problem"] = {"code": code, **extra}
        elif not outcome.passed:
            step = outcome.failed_step
            res.code = errors.LivenessFailed.code
            res.detail = f"未检测到动作：{_STEP_ZH[step]}" if step in _STEP_ZH else "未能确认按提示完成动作"
            res.figures["reason"] = outcome.reason
        else:
            res.distance = face_distance(outcome.best_encoding, ref_encoding)
            if res.distance > self.tolerance:
                res.code, res.detail = errors.FaceMismatch.code, "人脸与登记照片不一致"
            else:
                res.passed = True
                res.template = list(outcome.best_encoding)
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res

    def judge(
        self,
        steps: Sequence[Step],
        analyses: Sequence[FaceAnalysis],
        ref_encoding: Sequence[float],
        *,
        t0: float,
    ) -> VerificationResult:
        """The decision from analysed frames (all with one face): liveness, one person, the match."""
        live = check_liveness(steps, [a.points for a in analyses], self.liveness)
        best = live.best_frame if live.passed else _most_frontal(live.yaws, live.neutral_yaw)
        best_enc = analyses[best].encoding
        frame_distances = [face_distance(best_enc, a.encoding) for a in analyses]
        distance = face_distance(best_enc, ref_encoding)
        res = VerificationResult(
            passed=False,
            verifier=self.name,
            distance=distance,
            tolerance=self.tolerance,
            liveness_passed=live.passed,
            failed_step=live.failed_step.value if live.failed_step else None,
            best_frame=best,
            frame_distances=frame_distances,
            figures={
                "baseline_ear": round(live.baseline_ear, 4),
                "min_ear": round(min(live.ears), 4),
                "yaw_range": [round(min(live.yaws), 4), round(max(live.yaws), 4)],
                "step_frames": live.step_frames,
            },
        )
        if max(frame_distances) > self.frame_tolerance:
            res.code, res.detail = errors.FramesNotSamePerson.code, "画面中不是同一个人"
        elif not live.passed:
            step = live.failed_step
            res.code = errors.LivenessFailed.code
            res.detail = f"未检测到动作：{_STEP_ZH[step.value]}" if step else "活体检测未通过"
        elif distance > self.tolerance:
            res.code, res.detail = errors.FaceMismatch.code, "人脸与登记照片不一致"
        else:
            res.passed = True
            res.template = list(best_enc)
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res


_STEP_ZH = {"blink": "眨眨眼", "turn_left": "向左转头", "turn_right": "向右转头"}


def _most_frontal(yaws: Sequence[float], neutral: float) -> int:
    return min(range(len(yaws)), key=lambda i: abs(yaws[i] - neutral))


def raise_for_result(result: VerificationResult) -> None:
    """Turn a failed result into its ``identity.*`` error (after the caller has audited it)."""
    if result.passed:
        return
    cls: type[AppError] = {
        errors.LivenessFailed.code: errors.LivenessFailed,
        errors.FaceMismatch.code: errors.FaceMismatch,
        errors.FramesNotSamePerson.code: errors.FramesNotSamePerson,
        CaptureNotContinuous.code: CaptureNotContinuous,
        CaptureMultipleFaces.code: CaptureMultipleFaces,
        CaptureNoFace.code: CaptureNoFace,
        CaptureLivenessFailed.code: CaptureLivenessFailed,
    }.get(result.code or "", errors.LivenessFailed)
    extra: dict[str, Any] = {
        k: v for k, v in result.figures.get("capture_problem", {}).items() if k != "code"
    }
    if result.failed_step:
        extra["failed_step"] = result.failed_step
    raise cls(result.detail or None, **extra)
