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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app_api.core.errors import AppError
from identity import errors
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
    cls = {
        errors.LivenessFailed.code: errors.LivenessFailed,
        errors.FaceMismatch.code: errors.FaceMismatch,
        errors.FramesNotSamePerson.code: errors.FramesNotSamePerson,
    }.get(result.code or "", errors.LivenessFailed)
    extra: dict[str, Any] = {}
    if result.failed_step:
        extra["failed_step"] = result.failed_step
    raise cls(result.detail or None, **extra)
