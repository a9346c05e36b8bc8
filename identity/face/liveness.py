"""Challenge-response liveness from 68-point landmark sequences.

face_recognition has no liveness detection; what landmarks can show is that the face moved as
asked, in the order asked, within the frames of one upload:

- blink: the eye aspect ratio (EAR, Soukupova and Cech 2016) falls well below this person's own
  open-eye baseline and comes back. The baseline is taken from the upload itself, because a fixed
  absolute threshold misfires: smiling open-eye stills measured 0.154, under the usual 0.2-0.3;
- turn left / turn right: the yaw estimated from the nose tip's position between the two ends of
  the jaw outline moves past a threshold in the asked direction, relative to the upload's own
  neutral pose.

Directions are the resident's own: frames are expected as the camera captured them (not mirrored),
so when the resident turns to their left the nose moves towards the image's right, towards
landmark 16. A still photo sent as every frame has constant EAR and yaw and fails every step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

Point = tuple[float, float]


class Step(StrEnum):
    BLINK = "blink"
    TURN_LEFT = "turn_left"
    TURN_RIGHT = "turn_right"


STEP_LABELS_ZH = {Step.BLINK: "眨眨眼", Step.TURN_LEFT: "向左转头", Step.TURN_RIGHT: "向右转头"}


@dataclass(frozen=True)
class LivenessConfig:
    # Closed: EAR at or under this share of the open-eye baseline ("well below").
    blink_closed_ratio: float = 0.6
    # Open again: EAR at or over this share of the baseline, before and after the closure.
    blink_open_ratio: float = 0.85
    # Yaw (about tan(angle) for a nose as deep as half the jaw width) to count as a turn.
    turn_threshold: float = 0.25


@dataclass
class LivenessResult:
    passed: bool
    failed_step: Step | None = None
    # For each step done, the frame index at which it completed.
    step_frames: list[int] = field(default_factory=list)
    baseline_ear: float = 0.0
    neutral_yaw: float = 0.0
    ears: list[float] = field(default_factory=list)
    yaws: list[float] = field(default_factory=list)
    best_frame: int = 0
    reason: str = ""


def _dist(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def eye_aspect_ratio(eye: Sequence[Point]) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) over the six points of one eye."""
    width = _dist(eye[0], eye[3])
    if width <= 0:
        return 0.0
    return (_dist(eye[1], eye[5]) + _dist(eye[2], eye[4])) / (2.0 * width)


def ear(points: Sequence[Point]) -> float:
    """Mean EAR of both eyes from the 68 points."""
    return (eye_aspect_ratio(points[36:42]) + eye_aspect_ratio(points[42:48])) / 2.0


def yaw(points: Sequence[Point]) -> float:
    """Signed yaw: where the nose tip (30) falls between jaw ends 0 and 16, mapped to [-1, 1].

    0 is frontal; positive is towards landmark 16 (the resident's left in an unmirrored frame).
    """
    import numpy as np

    p0 = np.asarray(points[0], dtype=np.float64)
    p16 = np.asarray(points[16], dtype=np.float64)
    nose = np.asarray(points[30], dtype=np.float64)
    axis = p16 - p0
    n2 = float(axis @ axis)
    if n2 <= 0:
        return 0.0
    t = float((nose - p0) @ axis) / n2
    return 2.0 * t - 1.0


def check_liveness(
    steps: Sequence[Step], frames: Sequence[Sequence[Point]], config: LivenessConfig | None = None
) -> LivenessResult:
    """Did the frames (68 points each, in upload order) perform ``steps`` in that order?"""
    import numpy as np

    cfg = config or LivenessConfig()
    ears = [ear(p) for p in frames]
    yaws = [yaw(p) for p in frames]
    result = LivenessResult(passed=False, ears=ears, yaws=yaws)
    if not frames:
        result.failed_step = steps[0] if steps else None
        result.reason = "no frames"
        return result
    neutral = float(np.median(yaws))
    frontal = [i for i, y in enumerate(yaws) if abs(y - neutral) < cfg.turn_threshold / 2]
    # The open-eye baseline: an upper quantile of near-frontal frames, so that the closed frames
    # of the blink itself (a minority) do not drag it down; turned frames are left out because
    # foreshortening widens the EAR.
    baseline = float(np.percentile([ears[i] for i in frontal or range(len(frames))], 75))
    result.baseline_ear, result.neutral_yaw = baseline, neutral

    events = motion_events(ears, yaws, baseline, neutral, cfg)
    # Steps must appear in the asked order. Turns must match exactly (a recording that turns
    # left, right and left again would otherwise satisfy both orders); a blink the challenge did
    # not ask for is tolerated, since people blink without thinking about it.
    k = 0
    for step in steps:
        while k < len(events) and events[k][0] is not step and events[k][0] is Step.BLINK:
            k += 1
        if k >= len(events) or events[k][0] is not step:
            result.failed_step = step
            seen = ", ".join(f"{e.value}@{i}" for e, i in events) or "none"
            result.reason = f"expected {step.value}; motions seen: {seen}"
            return result
        result.step_frames.append(events[k][1])
        k += 1
    extra_turns = [e for e, _i in events[k:] if e is not Step.BLINK]
    if extra_turns:
        result.reason = f"unexpected {extra_turns[0].value} after the challenge"
        return result
    result.passed = True
    result.best_frame = best_frame(ears, yaws, neutral, baseline, cfg)
    return result


def motion_events(
    ears: list[float], yaws: list[float], baseline: float, neutral: float, cfg: LivenessConfig
) -> list[tuple[Step, int]]:
    """The motions in a sequence, in order, each with the frame where it starts.

    A turn is a run of frames turned past the threshold one way (relative to the neutral yaw, and
    past half the threshold absolutely, so that an upload held turned throughout cannot redefine
    "neutral"). A blink is a run of closed-eye frames (EAR at or under ``blink_closed_ratio`` of
    the open-eye baseline, on frames that are not turned) with an open frame (at or over
    ``blink_open_ratio``) somewhere before it and after it, half-closed frames allowed between.
    """
    n = len(ears)
    turn: list[Step | None] = []
    for y in yaws:
        rel = y - neutral
        if rel >= cfg.turn_threshold and y >= cfg.turn_threshold / 2:
            turn.append(Step.TURN_LEFT)
        elif -rel >= cfg.turn_threshold and -y >= cfg.turn_threshold / 2:
            turn.append(Step.TURN_RIGHT)
        else:
            turn.append(None)
    open_level, closed_level = cfg.blink_open_ratio * baseline, cfg.blink_closed_ratio * baseline
    closed = [turn[i] is None and baseline > 0 and ears[i] <= closed_level for i in range(n)]
    is_open = [ears[i] >= open_level for i in range(n)]

    events: list[tuple[Step, int]] = []
    i = 0
    while i < n:
        t = turn[i]
        if t is not None:
            if i == 0 or turn[i - 1] is not t:
                events.append((t, i))
            i += 1
            continue
        if closed[i]:
            j = i - 1
            while j >= 0 and not is_open[j] and turn[j] is None:
                j -= 1
            k = i + 1
            while k < n and not is_open[k] and turn[k] is None:
                k += 1
            if j >= 0 and is_open[j] and k < n and is_open[k]:
                events.append((Step.BLINK, i))
                i = k
                continue
        i += 1
    return events


def best_frame(
    ears: list[float], yaws: list[float], neutral: float, baseline: float, cfg: LivenessConfig
) -> int:
    """The most frontal open-eye frame: the one compared with the ID photo."""
    candidates = [i for i, e in enumerate(ears) if e >= cfg.blink_open_ratio * baseline] or list(
        range(len(ears))
    )
    return min(candidates, key=lambda i: (abs(yaws[i] - neutral), -ears[i]))
