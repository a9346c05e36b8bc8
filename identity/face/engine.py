"""Face detection, landmarks and encodings for one image (runs inside a worker process).

Uses face_recognition's own dlib models (HOG detector, 68-point landmarks, the "small" 5-point
alignment for the 128-d encoding) so distances are the ones face_recognition reports. The detector
is called through dlib's ``run`` to get each detection's score, which the one-face rule needs.

Errors are returned, not raised, so nothing but plain data crosses the process boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from identity.face.image import ImageLimits, ImageProblem, decode_for_detection

# Detections below this dlib score are marginal (its decision boundary is 0). A second, weak
# detection beside a confident face is a false face (astronaut_collins.png: 0.12 on the mission
# patch beside 1.16 on her face, both 90x90 px), so it does not make the image "two faces".
WEAK_DETECTION_SCORE = 0.3
# A second confident face smaller than this share of the largest one's area is a face in the
# background, not a second subject.
MINOR_FACE_AREA_RATIO = 0.4

if TYPE_CHECKING:
    import numpy as np

LANDMARK_GROUPS: dict[str, range] = {
    "chin": range(0, 17),
    "left_eyebrow": range(17, 22),
    "right_eyebrow": range(22, 27),
    "nose_bridge": range(27, 31),
    "nose_tip": range(31, 36),
    "left_eye": range(36, 42),
    "right_eye": range(42, 48),
    "top_lip": range(48, 60),
    "bottom_lip": range(60, 68),
}


@dataclass(frozen=True)
class Detection:
    top: int
    right: int
    bottom: int
    left: int
    score: float

    @property
    def area(self) -> int:
        return max(0, self.bottom - self.top) * max(0, self.right - self.left)

    def css(self) -> tuple[int, int, int, int]:
        return (self.top, self.right, self.bottom, self.left)


@dataclass
class FaceAnalysis:
    """What one image yields. ``problem`` is set (and the rest empty) when it is unusable."""

    problem: str | None = None  # image_* | no_face | multiple_faces
    message: str = ""
    width: int = 0  # original, from the header
    height: int = 0
    scale: float = 1.0  # detection image / original
    detections: list[Detection] = field(default_factory=list)
    face: Detection | None = None
    # 68 points in detection-image coordinates, as (x, y).
    points: list[tuple[float, float]] = field(default_factory=list)
    encoding: list[float] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def landmarks(self) -> dict[str, list[tuple[float, float]]]:
        return {name: [self.points[i] for i in idx] for name, idx in LANDMARK_GROUPS.items()}


def choose_face(detections: list[Detection]) -> tuple[Detection | None, list[Detection]]:
    """The one subject face, and the confident faces that compete with it (then: refuse).

    Weak detections are ignored unless they are all there is; among the rest the largest is the
    subject, and another counts as a second person only if it is at least MINOR_FACE_AREA_RATIO
    of the subject's area.
    """
    if not detections:
        return None, []
    strong = [d for d in detections if d.score >= WEAK_DETECTION_SCORE]
    if not strong:
        strong = [max(detections, key=lambda d: d.score)]
    subject = max(strong, key=lambda d: (d.area, d.score))
    rivals = [d for d in strong if d is not subject and d.area >= MINOR_FACE_AREA_RATIO * subject.area]
    return subject, rivals


_models: dict[str, Any] = {}


def _load_models() -> dict[str, Any]:
    if not _models:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition.api as api
        from PIL import ImageFile

        # face_recognition turns on Pillow's LOAD_TRUNCATED_IMAGES for its own loader (which we do
        # not use); a truncated upload must be refused as corrupt, not padded with grey.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        _models.update(
            detector=api.face_detector,
            predictor68=api.pose_predictor_68_point,
            api=api,
        )
    return _models


def warm_up() -> None:
    """Load the dlib models (about a second); run once per worker process."""
    _load_models()


def analyse_image(
    data: bytes, limits: ImageLimits, *, upsample: int = 1, encode: bool = True
) -> FaceAnalysis:
    """Decode, detect, pick the subject face, then its 68 landmarks and 128-d encoding."""
    import time

    import dlib

    m = _load_models()
    t0 = time.perf_counter()
    try:
        img, info, scale = decode_for_detection(data, limits)
    except ImageProblem as e:
        return FaceAnalysis(problem=e.kind, message=e.message)
    t1 = time.perf_counter()
    rects, scores, _kinds = m["detector"].run(img, upsample, 0.0)
    h, w = img.shape[:2]
    detections = [
        Detection(
            top=max(r.top(), 0),
            right=min(r.right(), w),
            bottom=min(r.bottom(), h),
            left=max(r.left(), 0),
            score=float(s),
        )
        for r, s in zip(rects, scores, strict=True)
    ]
    t2 = time.perf_counter()
    out = FaceAnalysis(width=info.width, height=info.height, scale=scale, detections=detections)
    face, rivals = choose_face(detections)
    if face is None:
        out.problem, out.message = "no_face", "no face detected"
        return out
    if rivals:
        out.problem, out.message = "multiple_faces", f"{1 + len(rivals)} faces detected"
        return out
    out.face = face
    rect = dlib.rectangle(face.left, face.top, face.right, face.bottom)
    shape = m["predictor68"](img, rect)
    out.points = [(float(p.x), float(p.y)) for p in shape.parts()]
    t3 = time.perf_counter()
    if encode:
        enc = m["api"].face_encodings(img, [face.css()], num_jitters=1, model="small")
        out.encoding = [float(x) for x in enc[0]]
    t4 = time.perf_counter()
    out.timings_ms = {
        "decode": (t1 - t0) * 1e3,
        "detect": (t2 - t1) * 1e3,
        "landmarks": (t3 - t2) * 1e3,
        "encode": (t4 - t3) * 1e3,
    }
    return out


def face_distance(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Euclidean distance between two 128-d encodings (face_recognition.face_distance)."""
    import numpy as np

    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))
