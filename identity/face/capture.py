"""One capture per challenge: a clip or burst of frames at a real frame rate, and what it shows.

A capture is an ordered list of frames with capture timestamps (ms) from one clip (decoded with
OpenCV: Motion-JPEG AVI, MP4, ...) or one burst of JPEG/PNG frames with their timestamps. Three
layers, each refusing with its own problem code:

1. ``validate_capture``: the frames themselves (frame rate, duration, order, duplicates, one
   resolution, size) before any face work: ``identity.capture_*`` 4xx problems.
2. ``check_continuity``: one face track: one face in every analysed frame, a small identity distance
   between consecutive frames, smooth landmark and box motion (no cuts), and micro-motion (a still
   replayed frame after frame has none), and a face that is not a flat picture moved about (the
   non-eye landmarks of every frame must not all be one homography of the first frame's).
3. ``check_challenge``: the asked moves in the asked order inside the clip, each within its step
   window when the client sends per-step timing: turns by head pose (``identity.face.pose``: solvePnP
   with a generic 3D face, plus nose parallax and non-planarity), blinks by the eye's appearance
   over time (``identity.face.blink``).

Frames are RGB ``uint8`` arrays. ``analyse_frames`` runs detection, the one-face rule, 68 landmarks
and the 128-d encoding with the engine's models (the same numbers as ``identity.face.engine``).
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from app_api.core.errors import AppError
from identity.face.liveness import Step

if TYPE_CHECKING:
    import numpy as np

Point = tuple[float, float]


# ---------------------------------------------------------------------------------------------
# Errors (problem+json through the app's AppError handler)


class CaptureInvalid(AppError):
    code = "identity.capture_invalid"
    title = "无法识别的视频或图片，请重新拍摄"
    status = 422


class CaptureTooLarge(AppError):
    code = "identity.capture_too_large"
    title = "拍摄内容过大"
    status = 413


class CaptureFrameRate(AppError):
    code = "identity.capture_frame_rate"
    title = "拍摄帧率不符合要求，请使用手机相机直接拍摄"
    status = 422


class CaptureTooShort(AppError):
    code = "identity.capture_too_short"
    title = "拍摄时间过短，请按提示完成全部动作"
    status = 422


class CaptureTooLong(AppError):
    code = "identity.capture_too_long"
    title = "拍摄时间过长，请重新拍摄"
    status = 422


class CaptureOutOfOrder(AppError):
    code = "identity.capture_out_of_order"
    title = "拍摄帧的时间顺序不正确"
    status = 422


class CaptureDuplicateFrames(AppError):
    code = "identity.capture_duplicate_frames"
    title = "拍摄内容包含重复的画面"
    status = 422


class CaptureMixedResolution(AppError):
    code = "identity.capture_mixed_resolution"
    title = "拍摄帧的分辨率不一致"
    status = 422


class CaptureNotContinuous(AppError):
    """Not one continuous face track: a cut, another photo, another person, a still picture."""

    code = "identity.capture_not_continuous"
    title = "拍摄画面不连续，请在镜头前连续完成动作"
    status = 422


class CaptureMultipleFaces(AppError):
    code = "identity.capture_multiple_faces"
    title = "拍摄画面中出现多张人脸，请确保画面中只有您本人"
    status = 422


class CaptureNoFace(AppError):
    code = "identity.capture_no_face"
    title = "拍摄画面中未能持续检测到人脸，请正对镜头并保持光线充足"
    status = 422


class CaptureLivenessFailed(AppError):
    code = "identity.capture_liveness_failed"
    title = "未能确认按提示完成动作，请重新拍摄"
    status = 422


# ---------------------------------------------------------------------------------------------
# The capture and its limits


@dataclass(frozen=True)
class CaptureLimits:
    min_fps: float = 8.0  # a phone camera films at 15-60 fps; a burst at 8 fps still sees a blink
    max_fps: float = 61.0
    min_duration_ms: float = 1000.0
    max_duration_ms: float = 20000.0
    min_frames: int = 8
    max_frames: int = 600
    max_bytes: int = 16 * 1024 * 1024  # the clip or the whole burst
    max_pixels: int = 1920 * 1080  # per frame
    # Timing jitter: any frame interval may be at most this multiple of the median interval.
    max_interval_ratio: float = 3.0
    # Detection is done on frames downscaled so that the longer side is at most this.
    max_side: int = 640


@dataclass
class Frame:
    image: np.ndarray  # RGB uint8, H x W x 3
    t_ms: float


@dataclass
class Capture:
    frames: list[Frame]
    source: str = "burst"  # "clip" | "burst"

    @property
    def duration_ms(self) -> float:
        return self.frames[-1].t_ms - self.frames[0].t_ms if self.frames else 0.0

    def subsample(self, every: int) -> Capture:
        """Every n-th frame (timestamps kept), for tests and quick checks."""
        return Capture(frames=self.frames[::every], source=self.source)

    def window(self, first: int, last: int) -> Capture:
        """Frames first..last inclusive."""
        return Capture(frames=self.frames[first : last + 1], source=self.source)


def decode_clip(data: bytes, limits: CaptureLimits | None = None) -> Capture:
    """A short video (Motion-JPEG AVI, MP4, ...) decoded by OpenCV, with each frame's timestamp."""
    import cv2
    import numpy as np

    lim = limits or CaptureLimits()
    if len(data) > lim.max_bytes:
        raise CaptureTooLarge(
            f"视频大小 {len(data)} 字节，超过上限 {lim.max_bytes} 字节", max_bytes=lim.max_bytes
        )
    if len(data) < 64:
        raise CaptureInvalid("视频内容为空或已损坏")
    fd, path = tempfile.mkstemp(suffix=".bin")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        cap = cv2.VideoCapture(path)
        if not cap.isOpened():
            raise CaptureInvalid("无法解码视频")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        frames: list[Frame] = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            if h * w > lim.max_pixels:
                raise CaptureTooLarge(f"视频分辨率 {w}x{h} 超过上限", max_pixels=lim.max_pixels)
            if len(frames) >= lim.max_frames:
                raise CaptureTooLong(f"视频超过 {lim.max_frames} 帧", max_frames=lim.max_frames)
            t = float(cap.get(cv2.CAP_PROP_POS_MSEC))
            if not math.isfinite(t) or (frames and t <= frames[-1].t_ms and fps > 0):
                t = len(frames) * 1000.0 / fps if fps > 0 else float("nan")
            frames.append(Frame(image=np.ascontiguousarray(bgr[:, :, ::-1]), t_ms=t))
        cap.release()
    finally:
        os.unlink(path)
    if not frames:
        raise CaptureInvalid("无法解码视频")
    return Capture(frames=frames, source="clip")


def decode_burst(
    images: Sequence[bytes], timestamps_ms: Sequence[float], limits: CaptureLimits | None = None
) -> Capture:
    """A burst of JPEG/PNG/WebP frames with the capture time of each (ms, the camera's clock)."""
    import io

    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    lim = limits or CaptureLimits()
    if len(images) != len(timestamps_ms):
        raise CaptureInvalid("帧数与时间戳数量不一致", frames=len(images), timestamps=len(timestamps_ms))
    if len(images) > lim.max_frames:
        raise CaptureTooLong(f"超过 {lim.max_frames} 帧", max_frames=lim.max_frames)
    total = sum(len(b) for b in images)
    if total > lim.max_bytes:
        raise CaptureTooLarge(
            f"拍摄内容 {total} 字节，超过上限 {lim.max_bytes} 字节", max_bytes=lim.max_bytes
        )
    frames: list[Frame] = []
    for i, (data, t) in enumerate(zip(images, timestamps_ms, strict=True)):
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in ("JPEG", "PNG", "WEBP"):
                    raise CaptureInvalid(f"第 {i + 1} 帧不是 JPEG/PNG/WebP 图片", frame=i)
                if im.width * im.height > lim.max_pixels:
                    raise CaptureTooLarge(
                        f"第 {i + 1} 帧分辨率 {im.width}x{im.height} 超过上限",
                        frame=i,
                        max_pixels=lim.max_pixels,
                    )
                im.load()
                rgb = ImageOps.exif_transpose(im).convert("RGB")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise CaptureInvalid(f"第 {i + 1} 帧无法识别", frame=i) from e
        if not math.isfinite(float(t)):
            raise CaptureOutOfOrder(f"第 {i + 1} 帧的时间戳无效", frame=i)
        frames.append(Frame(image=np.asarray(rgb, dtype=np.uint8), t_ms=float(t)))
    return Capture(frames=frames, source="burst")


def validate_capture(capture: Capture, limits: CaptureLimits | None = None) -> float:
    """Refuse what no phone camera films; returns the frame rate (fps)."""
    import hashlib

    import numpy as np

    lim = limits or CaptureLimits()
    frames = capture.frames
    if len(frames) < lim.min_frames:
        raise CaptureTooShort(
            f"只有 {len(frames)} 帧，至少需要 {lim.min_frames} 帧", min_frames=lim.min_frames
        )
    if len(frames) > lim.max_frames:
        raise CaptureTooLong(f"超过 {lim.max_frames} 帧", max_frames=lim.max_frames)
    shape = frames[0].image.shape
    for i, f in enumerate(frames):
        if f.image.shape != shape:
            raise CaptureMixedResolution(
                f"第 {i + 1} 帧为 {f.image.shape[1]}x{f.image.shape[0]}，第 1 帧为 {shape[1]}x{shape[0]}",
                frame=i,
            )
    ts = np.array([f.t_ms for f in frames], dtype=np.float64)
    if not np.all(np.isfinite(ts)):
        raise CaptureOutOfOrder("帧时间戳无效")
    dts = np.diff(ts)
    bad = np.flatnonzero(dts <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise CaptureOutOfOrder(f"第 {i + 1} 帧的时间早于或等于前一帧", frame=i)
    duration = float(ts[-1] - ts[0])
    if duration < lim.min_duration_ms:
        raise CaptureTooShort(
            f"拍摄时长 {duration:.0f} 毫秒，至少需要 {lim.min_duration_ms:.0f} 毫秒",
            min_duration_ms=lim.min_duration_ms,
        )
    if duration > lim.max_duration_ms:
        raise CaptureTooLong(f"拍摄时长 {duration:.0f} 毫秒，超过上限", max_duration_ms=lim.max_duration_ms)
    median_dt = float(np.median(dts))
    fps = 1000.0 / median_dt
    if not lim.min_fps <= fps <= lim.max_fps:
        raise CaptureFrameRate(
            f"帧率 {fps:.1f} 帧/秒，应在 {lim.min_fps:.0f}-{lim.max_fps:.0f} 帧/秒之间",
            fps=round(fps, 2),
            min_fps=lim.min_fps,
            max_fps=lim.max_fps,
        )
    worst = int(np.argmax(dts))
    if dts[worst] > lim.max_interval_ratio * median_dt:
        raise CaptureFrameRate(
            f"第 {worst + 1} 帧与第 {worst + 2} 帧间隔 {dts[worst]:.0f} 毫秒，"
            f"帧率不均匀（中位间隔 {median_dt:.0f} 毫秒）",
            frame=worst + 1,
        )
    # Byte-identical frames: a camera's sensor noise makes consecutive real frames differ.
    seen: dict[bytes, int] = {}
    for i, f in enumerate(frames):
        h = hashlib.blake2b(np.ascontiguousarray(f.image).tobytes(), digest_size=16).digest()
        if h in seen:
            raise CaptureDuplicateFrames(
                f"第 {i + 1} 帧与第 {seen[h] + 1} 帧完全相同", frame=i, same_as=seen[h]
            )
        seen[h] = i
    return fps


# ---------------------------------------------------------------------------------------------
# Per-frame analysis


@dataclass
class FrameFace:
    """One frame's face: ``faces`` is the number of confident faces (0 or more than 1: refused)."""

    index: int
    t_ms: float
    faces: int
    box: tuple[int, int, int, int] | None = None  # top, right, bottom, left (detection image)
    points: list[Point] = field(default_factory=list)  # 68, detection-image coordinates
    encoding: list[float] = field(default_factory=list)
    scale: float = 1.0
    width: int = 0  # detection image
    height: int = 0
    gray: Any = None  # detection-size grayscale image, for the eye's appearance


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img, s


def analyse_frames(
    capture: Capture, *, upsample: int = 1, max_side: int = 640, encode: bool = True, keep_gray: bool = True
) -> list[FrameFace]:
    """Detection (one-face rule), 68 landmarks and the 128-d encoding of every frame."""
    import cv2
    import dlib
    import numpy as np

    from identity.face.engine import Detection, _load_models, choose_face

    m = _load_models()
    out: list[FrameFace] = []
    for i, fr in enumerate(capture.frames):
        img, s = _downscale(fr.image, max_side)
        img = np.ascontiguousarray(img)
        h, w = img.shape[:2]
        rects, scores, _k = m["detector"].run(img, upsample, 0.0)
        dets = [
            Detection(
                top=max(r.top(), 0),
                right=min(r.right(), w),
                bottom=min(r.bottom(), h),
                left=max(r.left(), 0),
                score=float(sc),
            )
            for r, sc in zip(rects, scores, strict=True)
        ]
        face, rivals = choose_face(dets)
        ff = FrameFace(
            index=i, t_ms=fr.t_ms, faces=0 if face is None else 1 + len(rivals), scale=s, width=w, height=h
        )
        if face is not None and not rivals:
            shape = m["predictor68"](img, dlib.rectangle(face.left, face.top, face.right, face.bottom))
            ff.box = face.css()
            ff.points = [(float(p.x), float(p.y)) for p in shape.parts()]
            if encode:
                enc = m["api"].face_encodings(img, [face.css()], num_jitters=1, model="small")
                ff.encoding = [float(x) for x in enc[0]]
            if keep_gray:
                ff.gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        out.append(ff)
    return out


# ---------------------------------------------------------------------------------------------
# Continuity: one face track


@dataclass(frozen=True)
class ContinuityConfig:
    # Largest share of frames without a face (a blink-blurred or turned frame may be missed).
    max_missing_share: float = 0.2
    # Longest run without a face (ms): longer is a cut.
    max_missing_ms: float = 400.0
    # Identity distance between consecutive analysed frames (dlib encodings). Different photos of
    # one person measure 0.33-0.45 (tests/fixtures/faces); consecutive video frames far less.
    # The real Intel head-turn clip (12.5 fps, fast turns) measured up to 0.38.
    max_step_distance: float = 0.42
    # Any frame against the track's first frame (profile against frontal measured 0.51 in the Intel
    # clip; different people in the GRID clips are 0.62 or more apart).
    max_track_distance: float = 0.58
    # Box motion per 100 ms, in box widths (position) and as a size ratio (a cut jumps).
    max_shift_per_100ms: float = 0.6
    max_scale_step: float = 1.35
    # Landmark micro-motion: a still replayed has (almost) none; inter-ocular units.
    min_micro_motion: float = 0.004
    # A cut: one step whose change of face shape (landmarks after removing position, size and
    # in-plane rotation; IOD units) or identity distance stands out against the steps around it,
    # or a zig-zag (frame k differs from both neighbours, which are alike: alternating photos).
    min_jump_shape: float = 0.06
    min_jump_identity: float = 0.2
    jump_ratio: float = 4.0
    zigzag_ratio: float = 0.5
    # Flat picture: largest homography residual of the non-eye landmarks over the clip, in
    # inter-ocular units; a real face talking, blinking or turning goes above this.
    min_nonplanarity: float = 0.02


# The landmarks of a rigid face plus the mouth, without the eyes (painted eyes move the eye points).
_NON_EYE = [*range(0, 36), *range(48, 68)]
# The head without the eyes and mouth (which move on their own when blinking and talking).
_HEAD = [*range(0, 36), 36, 39, 42, 45]


def shape_change(a: np.ndarray, b: np.ndarray, iod: float) -> float:
    """RMS distance between two landmark sets after the best similarity transform (Procrustes),
    in units of ``iod``: how much the face's shape (pose, expression) changed."""
    import numpy as np

    x = a - a.mean(axis=0)
    y = b - b.mean(axis=0)
    u, sig, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, d])
    rot = u @ fix @ vt
    scale = float(np.trace(np.diag(sig) @ fix)) / float((x * x).sum() or 1.0)
    r = scale * x @ rot - y
    return float(np.sqrt(np.mean(np.sum(r * r, axis=1)))) / (iod or 1.0)


def _stands_out(values: Sequence[float], k: int, ratio: float) -> bool:
    import numpy as np

    around = [values[j] for j in (k - 2, k - 1, k + 1, k + 2) if 0 <= j < len(values)]
    return bool(around) and values[k] > ratio * float(np.median(around))


def _iod(pts: np.ndarray) -> float:
    import numpy as np

    return float(np.linalg.norm(pts[45] - pts[36])) or 1.0


def homography_residual(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS distance (px) of ``dst`` from the best homography image of ``src`` (least squares)."""
    import cv2
    import numpy as np

    hmat, _ = cv2.findHomography(src.astype(np.float64), dst.astype(np.float64), 0)
    if hmat is None:
        return float("inf")
    proj = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), hmat).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((proj - dst) ** 2, axis=1))))


@dataclass
class ContinuityResult:
    frames_with_face: int
    max_step_distance: float
    max_track_distance: float
    max_shift_per_100ms: float
    max_scale_step: float
    micro_motion: float
    nonplanarity: float
    max_jump: float = 0.0


def check_continuity(faces: Sequence[FrameFace], cfg: ContinuityConfig | None = None) -> ContinuityResult:
    """One live face track, or the problem that says what is wrong (raises)."""
    import numpy as np

    from identity.face.engine import face_distance

    c = cfg or ContinuityConfig()
    multi = [f.index for f in faces if f.faces > 1]
    if multi:
        raise CaptureMultipleFaces(f"第 {multi[0] + 1} 帧检测到多张人脸", frame=multi[0], frames=len(multi))
    good = [f for f in faces if f.points]
    if len(good) < 2 or (len(faces) - len(good)) > c.max_missing_share * len(faces):
        raise CaptureNoFace(f"{len(faces)} 帧中只有 {len(good)} 帧检测到人脸", frames_with_face=len(good))
    # Gaps without a face (including at the ends, against the capture's span).
    times = [f.t_ms for f in faces]
    gaps = [b.t_ms - a.t_ms for a, b in itertools.pairwise(good)]
    gaps += [good[0].t_ms - times[0], times[-1] - good[-1].t_ms]
    if max(gaps) > c.max_missing_ms:
        raise CaptureNoFace(f"连续 {max(gaps):.0f} 毫秒未检测到人脸", gap_ms=round(max(gaps)))

    step_d: list[float] = []
    track_d: list[float] = []
    shifts: list[float] = []
    scales: list[float] = []
    motions: list[float] = []
    ref = np.asarray(good[0].points)
    nonplanar = 0.0
    for a, b in itertools.pairwise(good):
        if a.encoding and b.encoding:
            step_d.append(face_distance(a.encoding, b.encoding))
        pa, pb = np.asarray(a.points), np.asarray(b.points)
        wa = max(1.0, float(a.box[1] - a.box[3])) if a.box else _iod(pa)
        # Size by the box height: a turn narrows the face but not its height.
        ha = max(1.0, float(a.box[2] - a.box[0])) if a.box else _iod(pa)
        hb = max(1.0, float(b.box[2] - b.box[0])) if b.box else _iod(pb)
        dt = max(1.0, b.t_ms - a.t_ms)
        ca, cb = pa[_NON_EYE].mean(axis=0), pb[_NON_EYE].mean(axis=0)
        shifts.append(float(np.linalg.norm(cb - ca)) / wa * (100.0 / dt))
        scales.append(max(ha, hb) / min(ha, hb))
        motions.append(float(np.max(np.linalg.norm(pb[_NON_EYE] - pa[_NON_EYE], axis=1))) / _iod(pa))
    for f in good[1:]:
        if f.encoding and good[0].encoding:
            track_d.append(face_distance(good[0].encoding, f.encoding))
        p = np.asarray(f.points)
        nonplanar = max(nonplanar, homography_residual(ref[_NON_EYE], p[_NON_EYE]) / _iod(p))
    pts_all = [np.asarray(f.points)[_HEAD] for f in good]
    iods = [_iod(np.asarray(f.points)) for f in good]
    shape_steps = [shape_change(pts_all[k], pts_all[k + 1], iods[k + 1]) for k in range(len(good) - 1)]
    encs = [f.encoding for f in good]
    id_steps = [face_distance(a, b) if a and b else 0.0 for a, b in itertools.pairwise(encs)]
    cut_at: int | None = None
    cut_kind = ""
    max_jump = 0.0
    for k in range(len(shape_steps)):
        if shape_steps[k] >= c.min_jump_shape and _stands_out(shape_steps, k, c.jump_ratio):
            cut_at, cut_kind = good[k + 1].index, "shape_jump"
        elif id_steps[k] >= c.min_jump_identity and _stands_out(id_steps, k, c.jump_ratio):
            cut_at, cut_kind = good[k + 1].index, "identity_jump"
        if cut_at is not None:
            break
        if k > 0:
            # Zig-zag: frames k-1 and k+1 alike, frame k different from both.
            pair = [
                (
                    shape_steps[k - 1],
                    shape_steps[k],
                    shape_change(pts_all[k - 1], pts_all[k + 1], iods[k + 1]),
                    c.min_jump_shape,
                ),
                (
                    id_steps[k - 1],
                    id_steps[k],
                    face_distance(encs[k - 1], encs[k + 1]) if encs[k - 1] and encs[k + 1] else 1.0,
                    c.min_jump_identity,
                ),
            ]
            for before, after, across, floor in pair:
                step = min(before, after)
                max_jump = max(max_jump, step)
                if step >= floor and across < c.zigzag_ratio * step:
                    cut_at, cut_kind = good[k].index, "zigzag"
                    break
            if cut_at is not None:
                break
    res = ContinuityResult(
        max_jump=max_jump,
        frames_with_face=len(good),
        max_step_distance=max(step_d, default=0.0),
        max_track_distance=max(track_d, default=0.0),
        max_shift_per_100ms=max(shifts, default=0.0),
        max_scale_step=max(scales, default=1.0),
        micro_motion=float(np.median(motions)) if motions else 0.0,
        nonplanarity=nonplanar,
    )
    figures = {
        "max_step_distance": round(res.max_step_distance, 3),
        "max_track_distance": round(res.max_track_distance, 3),
        "max_shift_per_100ms": round(res.max_shift_per_100ms, 3),
        "max_scale_step": round(res.max_scale_step, 3),
        "micro_motion": round(res.micro_motion, 4),
        "nonplanarity": round(res.nonplanarity, 4),
    }
    if cut_at is not None:
        raise CaptureNotContinuous(
            f"第 {cut_at + 1} 帧与前后画面不连续，疑似剪辑或更换照片",
            reason=cut_kind,
            frame=cut_at,
            **figures,
        )
    if res.max_step_distance > c.max_step_distance or res.max_track_distance > c.max_track_distance:
        raise CaptureNotContinuous("相邻画面不像同一段连续拍摄的同一个人", reason="identity_jump", **figures)
    if res.max_shift_per_100ms > c.max_shift_per_100ms or res.max_scale_step > c.max_scale_step:
        raise CaptureNotContinuous("人脸位置或大小在相邻画面间突变", reason="cut", **figures)
    if res.micro_motion < c.min_micro_motion:
        raise CaptureNotContinuous(
            "画面中的人脸没有任何细微活动，疑似静止照片", reason="no_motion", **figures
        )
    if res.nonplanarity < c.min_nonplanarity:
        raise CaptureNotContinuous("人脸的变化与平面照片的移动一致，疑似照片", reason="flat", **figures)
    return res


# ---------------------------------------------------------------------------------------------
# The challenge inside the clip


@dataclass(frozen=True)
class TurnConfig:
    # Outline yaw (the 2D proxy of identity.face.liveness) away from the clip's neutral pose.
    min_outline_yaw: float = 0.25
    # solvePnP yaw away from the clip's neutral, same direction (degrees).
    min_pose_yaw_deg: float = 12.0
    # Nose parallax per unit of outline yaw (pose.nose_parallax), against the nose root and against
    # the inner eye corners, both relative to the clip's neutral frames. The three real turns of the
    # Intel clip measure 0.27 and 0.42-0.46; a photo with one side squeezed about the nose
    # 0.10-0.14 and 0.29-0.34 (tests/identity/test_capture_attacks.py). One real person only (a
    # flatter nose gives less): to be measured on residents' captures before relying on it.
    min_parallax_root_per_yaw: float = 0.19
    min_parallax_inner_per_yaw: float = 0.36
    # Homography residual of the rigid landmarks against the most frontal frame (IOD units): a
    # flat picture under any affine or perspective warp stays at the detector's noise.
    min_nonplanarity: float = 0.04


@dataclass(frozen=True)
class StepTiming:
    """The challenge's pacing, derived by the server whatever windows the client sends.

    Each asked move is searched over the whole capture, in the asked order; the server bounds when
    each may start: the first within ``max_first_delay_ms`` of the capture's first frame, each next
    one at least ``min_onset_gap_ms`` after the previous move's start (a resident reads the next
    instruction, then moves) and within ``max_step_delay_ms`` of the previous move's end (the
    client shows each instruction for 2-3 s; a move long after is not an answer to it). The real
    Intel turns start 830 ms apart; two natural blinks of one GRID clip 320 ms (blinks are never
    asked twice in one challenge). Client windows (``step_windows_ms``) are the client's own claim:
    they must be ordered, inside the capture and at least ``min_window_ms`` long, and each move
    must fall inside its window; they can only narrow what the server allows, never widen it.
    """

    min_onset_gap_ms: float = 400.0
    max_first_delay_ms: float = 6000.0
    max_step_delay_ms: float = 6000.0
    min_window_ms: float = 200.0
    # A client window may run past the capture's last frame by this much (its timeline vs the
    # camera's); a window that starts after the capture ended is refused.
    window_slack_ms: float = 500.0


def check_windows(
    windows: Sequence[tuple[float, float]], steps: int, duration_ms: float, timing: StepTiming
) -> None:
    """The client's step windows as a claim about this capture: one per step, ordered, inside it."""
    if len(windows) != steps:
        raise CaptureInvalid(f"step_windows_ms 应为 {steps} 个区间", field="step_windows_ms")
    prev_start = -math.inf
    for n, (a, b) in enumerate(windows):
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b - a < timing.min_window_ms:
            raise CaptureInvalid(
                f"第 {n + 1} 个步骤的时间区间无效（至少 {timing.min_window_ms:.0f} 毫秒）",
                field="step_windows_ms",
                step=n,
            )
        if a < prev_start:
            raise CaptureInvalid(f"第 {n + 1} 个步骤的时间区间早于前一步骤", field="step_windows_ms", step=n)
        if a > duration_ms + timing.window_slack_ms:
            raise CaptureInvalid(
                f"第 {n + 1} 个步骤的时间区间在拍摄结束之后", field="step_windows_ms", step=n
            )
        prev_start = a


@dataclass
class CaptureAnalysis:
    passed: bool
    failed_step: Step | None
    reason: str
    fps: float
    continuity: ContinuityResult | None
    step_frames: list[int] = field(default_factory=list)
    step_onsets_ms: list[float] = field(default_factory=list)  # from the first frame
    duration_ms: float = 0.0
    blinks: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    best_frame: int = 0

    def figures(self) -> dict[str, Any]:
        """For the attempt record (no images, no landmarks)."""
        c = self.continuity
        return {
            "fps": round(self.fps, 2),
            "step_frames": self.step_frames,
            "step_onsets_ms": [round(t) for t in self.step_onsets_ms],
            "duration_ms": round(self.duration_ms),
            "blinks": self.blinks,
            "turns": self.turns,
            "continuity": None
            if c is None
            else {
                "max_step_distance": round(c.max_step_distance, 3),
                "max_shift_per_100ms": round(c.max_shift_per_100ms, 3),
                "micro_motion": round(c.micro_motion, 4),
                "nonplanarity": round(c.nonplanarity, 4),
            },
        }


def neutral_pose(good: Sequence[FrameFace]) -> tuple[float, list[FrameFace]]:
    """The clip's neutral outline yaw and its near-frontal frames.

    The resident starts facing the camera, so the neutral pose is taken from the frames whose
    outline yaw is near 0 (within 0.15) when there are any; else from the median. Not simply the
    median: a clip that spends most of its time turned would shift it.
    """
    import numpy as np

    from identity.face.pose import outline_yaw

    oy = [outline_yaw(f.points) for f in good]
    frontal = [y for y in oy if abs(y) < 0.15]
    neutral = float(np.median(frontal if frontal else oy))
    near = [f for f, y in zip(good, oy, strict=True) if abs(y - neutral) < 0.125]
    return neutral, near or list(good)


def find_turns(faces: Sequence[FrameFace], cfg: TurnConfig | None = None) -> list[dict[str, Any]]:
    """Turn events (runs of frames turned one way), each with its 3D checks."""
    import numpy as np

    from identity.face.pose import head_pose, nose_parallax, outline_yaw, planar_residual

    c = cfg or TurnConfig()
    good = [f for f in faces if f.points]
    if len(good) < 2:
        return []
    oy = {f.index: outline_yaw(f.points) for f in good}
    py = {f.index: head_pose(f.points, f.width, f.height)[0] for f in good}
    par = {f.index: nose_parallax(f.points) for f in good}
    neutral_o, neutral_set = neutral_pose(good)
    neutral_p = float(np.median([py[f.index] for f in neutral_set]))
    ref = min(neutral_set, key=lambda f: abs(oy[f.index] - neutral_o))
    neutral_par = (
        float(np.median([par[f.index][0] for f in neutral_set])),
        float(np.median([par[f.index][1] for f in neutral_set])),
    )
    ref_pts = np.asarray(ref.points)
    events: list[dict[str, Any]] = []
    run: list[FrameFace] = []
    run_dir = 0

    def close_run() -> None:
        if not run:
            return
        peak = max(run, key=lambda f: abs(oy[f.index] - neutral_o))
        d_o = oy[peak.index] - neutral_o
        d_p = py[peak.index] - neutral_p
        d_root = par[peak.index][0] - neutral_par[0]
        d_inner = par[peak.index][1] - neutral_par[1]
        nonplanar = planar_residual(ref_pts, np.asarray(peak.points))
        ok, reason = True, ""
        if d_p * run_dir < c.min_pose_yaw_deg:
            ok, reason = False, f"pose yaw {d_p:+.1f} deg"
        elif d_root * run_dir < c.min_parallax_root_per_yaw * abs(
            d_o
        ) or d_inner * run_dir < c.min_parallax_inner_per_yaw * abs(d_o):
            ok, reason = (
                False,
                f"nose parallax too small ({d_root:+.3f}/{d_inner:+.3f} for outline {d_o:+.2f})",
            )
        elif nonplanar < c.min_nonplanarity:
            ok, reason = False, f"planar ({nonplanar:.3f})"
        events.append(
            {
                "step": (Step.TURN_LEFT if run_dir > 0 else Step.TURN_RIGHT).value,
                "start": run[0].index,
                "end": run[-1].index,
                "t_ms": run[0].t_ms,
                "outline_yaw": round(d_o, 3),
                "pose_yaw_deg": round(d_p, 1),
                "parallax_root": round(d_root, 3),
                "parallax_inner": round(d_inner, 3),
                "nonplanarity": round(nonplanar, 3),
                "ok": ok,
                "reason": reason,
            }
        )

    for f in good:
        rel = oy[f.index] - neutral_o
        d = 0
        if rel >= c.min_outline_yaw and oy[f.index] >= c.min_outline_yaw / 2:
            d = 1
        elif -rel >= c.min_outline_yaw and -oy[f.index] >= c.min_outline_yaw / 2:
            d = -1
        if d != run_dir:
            close_run()
            run, run_dir = [], d
        if d:
            run.append(f)
    close_run()
    return events


def find_capture_blinks(faces: Sequence[FrameFace], cfg: Any = None) -> list[dict[str, Any]]:
    """Blink events over the frames that show a face not turned (see ``identity.face.blink``)."""
    import numpy as np

    from identity.face.blink import eye_crop, find_blinks
    from identity.face.liveness import ear
    from identity.face.pose import outline_yaw

    good = [f for f in faces if f.points]
    if len(good) < 3:
        return []
    oy = [outline_yaw(f.points) for f in good]
    neutral, _near = neutral_pose(good)
    usable = [abs(y - neutral) < 0.125 and f.gray is not None for f, y in zip(good, oy, strict=True)]
    ears = [ear(f.points) for f in good]
    crops = [
        (eye_crop(f.gray, f.points, True), eye_crop(f.gray, f.points, False))
        if f.gray is not None
        else (np.zeros((16, 32)), np.zeros((16, 32)))
        for f in good
    ]
    events = find_blinks(ears, [f.t_ms for f in good], crops, usable, cfg)
    return [
        {
            "step": Step.BLINK.value,
            "start": good[e.start].index,
            "end": good[e.end].index,
            "t_ms": good[e.start].t_ms,
            "duration_ms": round(e.duration_ms),
            "min_ear_ratio": round(e.min_ear_ratio, 3),
            "appearance_drop": round(e.appearance_drop, 3),
            "iris_change": round(e.iris_change, 3),
            "ok": e.ok,
            "reason": e.reason,
        }
        for e in events
    ]


def check_challenge(
    steps: Sequence[Step],
    faces: Sequence[FrameFace],
    *,
    fps: float = 0.0,
    step_windows_ms: Sequence[tuple[float, float]] | None = None,
    continuity: ContinuityConfig | None = None,
    turns: TurnConfig | None = None,
    timing: StepTiming | None = None,
    moves_only: bool = False,
) -> CaptureAnalysis:
    """Continuity (raises on a broken track), then the asked moves in the asked order.

    Each move is searched over the whole capture in the asked order, and must start when the
    server's pacing allows (:class:`StepTiming`), whatever the client sends. ``step_windows_ms``:
    per step, (start, end) in ms from the first frame, when the client showed each instruction;
    checked as a claim about this capture (``check_windows``: malformed ones raise
    ``identity.capture_invalid``), and each move must also start inside its window. Unasked turns
    fail; unasked blinks are tolerated. ``moves_only`` skips the continuity check (diagnostics and
    tests: what the move checks alone would say).
    """
    tm = timing or StepTiming()
    t0 = faces[0].t_ms if faces else 0.0
    duration = faces[-1].t_ms - t0 if faces else 0.0
    if step_windows_ms is not None:
        check_windows(step_windows_ms, len(steps), duration, tm)
    cont = None if moves_only else check_continuity(faces, continuity)
    turn_events = find_turns(faces, turns)
    blink_events = find_capture_blinks(faces)
    events = sorted(turn_events + blink_events, key=lambda e: e["start"])
    out = CaptureAnalysis(
        passed=False,
        failed_step=None,
        reason="",
        fps=fps,
        continuity=cont,
        blinks=blink_events,
        turns=turn_events,
        duration_ms=duration,
    )
    end_t = {f.index: f.t_ms for f in faces}
    k = 0
    prev_onset: float | None = None  # ms from the first frame
    prev_end = 0.0
    for n, step in enumerate(steps):
        window = step_windows_ms[n] if step_windows_ms is not None else None
        # The server's window for this move: after the previous move (a reaction's time later),
        # not long after it ended (or after the capture began, for the first move).
        lo = 0.0 if prev_onset is None else prev_onset + tm.min_onset_gap_ms
        hi = tm.max_first_delay_ms if prev_onset is None else prev_end + tm.max_step_delay_ms
        # Blinks are tolerated anywhere: skip the unasked ones and, for a blink step, those that
        # start too soon after the previous move (a blink during a turn does not answer the next).
        while k < len(events) and events[k]["step"] == Step.BLINK.value:
            if events[k]["step"] == step.value and events[k]["t_ms"] - t0 >= lo:
                break
            k += 1
        if k >= len(events) or events[k]["step"] != step.value:
            out.failed_step = step
            seen = ", ".join(f"{e['step']}@{e['start']}" for e in events) or "none"
            out.reason = f"expected {step.value}; motions seen: {seen}"
            return out
        ev = events[k]
        if not ev["ok"]:
            out.failed_step, out.reason = step, f"{step.value} at frame {ev['start']}: {ev['reason']}"
            return out
        onset = ev["t_ms"] - t0
        if not lo <= onset <= hi:
            out.failed_step = step
            out.reason = (
                f"{step.value} at {onset:.0f} ms, outside the pace the server allows ({lo:.0f}-{hi:.0f} ms)"
            )
            return out
        if window is not None and not window[0] <= onset <= window[1]:
            out.failed_step = step
            out.reason = f"{step.value} at {onset:.0f} ms, outside its window {window}"
            return out
        out.step_frames.append(int(ev["start"]))
        out.step_onsets_ms.append(onset)
        prev_onset = onset
        prev_end = end_t.get(int(ev["end"]), ev["t_ms"]) - t0
        k += 1
    extra = [e for e in events[k:] if e["step"] != Step.BLINK.value]
    if extra:
        out.reason = f"unexpected {extra[0]['step']} after the challenge"
        return out
    out.passed = True
    from identity.face.liveness import ear
    from identity.face.pose import outline_yaw

    good = [f for f in faces if f.points]
    neutral, _near = neutral_pose(good)
    out.best_frame = min(
        good, key=lambda f: (abs(outline_yaw(f.points) - neutral) > 0.1, -ear(f.points))
    ).index
    return out


def analyse_capture(
    capture: Capture,
    steps: Sequence[Step],
    *,
    limits: CaptureLimits | None = None,
    step_windows_ms: Sequence[tuple[float, float]] | None = None,
    upsample: int = 1,
    analyse_fps: float | None = None,
) -> tuple[CaptureAnalysis, list[FrameFace]]:
    """The whole check of one capture: validate, analyse every frame, continuity, the moves.

    ``analyse_fps``: analyse every n-th frame so that at most this rate is analysed (None: all).
    Raises the ``identity.capture_*`` problems for bad input and broken tracks; a capture that is
    one live track but does not perform the moves returns ``passed=False`` with ``failed_step``.
    """
    lim = limits or CaptureLimits()
    fps = validate_capture(capture, lim)
    every = 1
    if analyse_fps and fps > analyse_fps:
        # Face work on every n-th frame (validation saw them all): a 30 fps clip analysed at 15 fps
        # still sees a blink (the GRID blinks were all found at 12.5 fps) and halves the time.
        every = math.ceil(fps / analyse_fps - 1e-6)
    faces = analyse_frames(capture.subsample(every), upsample=upsample, max_side=lim.max_side)
    for f in faces:
        f.index *= every  # frame numbers of the capture, in every figure and problem
    return check_challenge(steps, faces, fps=fps, step_windows_ms=step_windows_ms), faces


# ---------------------------------------------------------------------------------------------
# One job for the face engine's process pool: bytes in, plain data out


@dataclass
class CaptureOutcome:
    """What a worker sends back: no images, no landmarks (only the best frame's encoding)."""

    passed: bool = False
    failed_step: str | None = None
    reason: str = ""
    # Set when the capture was refused: the problem's code, detail and members.
    problem: tuple[str, str, dict[str, Any]] | None = None
    best_frame: int = 0
    best_encoding: list[float] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def raise_problem(self) -> None:
        """Raise the refusal as its identity.capture_* error (exceptions do not cross processes
        with their members, so the worker sends the parts)."""
        if self.problem is None:
            return
        code, detail, extra = self.problem
        cls = _PROBLEMS.get(code)
        if cls is None:
            raise CaptureInvalid(detail, **extra)
        raise cls(detail, **extra)


_PROBLEMS: dict[str, type[AppError]] = {
    c.code: c
    for c in (
        CaptureInvalid,
        CaptureTooLarge,
        CaptureFrameRate,
        CaptureTooShort,
        CaptureTooLong,
        CaptureOutOfOrder,
        CaptureDuplicateFrames,
        CaptureMixedResolution,
        CaptureNotContinuous,
        CaptureMultipleFaces,
        CaptureNoFace,
        CaptureLivenessFailed,
    )
}


def capture_job(
    steps: Sequence[str],
    *,
    clip: bytes | None = None,
    burst: Sequence[bytes] | None = None,
    timestamps_ms: Sequence[float] | None = None,
    step_windows_ms: Sequence[tuple[float, float]] | None = None,
    limits: CaptureLimits | None = None,
    upsample: int = 1,
    analyse_fps: float | None = 15.0,
) -> CaptureOutcome:
    """Decode, validate and analyse one capture (a clip, or a burst with its timestamps) inside a
    worker process; refusals come back as ``problem``, never raised across the process boundary."""
    lim = limits or CaptureLimits()
    try:
        if clip is not None:
            capture = decode_clip(clip, lim)
        else:
            capture = decode_burst(burst or [], timestamps_ms or [], lim)
        analysis, faces = analyse_capture(
            capture,
            [Step(s) for s in steps],
            limits=lim,
            step_windows_ms=step_windows_ms,
            upsample=upsample,
            analyse_fps=analyse_fps,
        )
    except AppError as e:
        return CaptureOutcome(problem=(e.code, e.detail, dict(e.extra)))
    out = CaptureOutcome(
        passed=analysis.passed,
        failed_step=analysis.failed_step.value if analysis.failed_step else None,
        reason=analysis.reason,
        best_frame=analysis.best_frame,
        figures=analysis.figures(),
    )
    if analysis.passed:
        best = next(f for f in faces if f.index == analysis.best_frame)
        out.best_encoding = list(best.encoding)
    return out
