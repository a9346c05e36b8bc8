"""Blinks from the eye's appearance over time, inside one capture.

A blink is a closing and reopening of both eyes within a physiological time (about 50-500 ms at the
frame rate of the capture), seen three ways at once:
- the eye aspect ratio (EAR) of the landmarks falls below this person's open-eye baseline and
  comes back;
- the pixels of the eye change with it: the eye crop, taken in a box fixed by the eye corners (so a
  squashed or painted eye cannot move the box), loses its correlation with the person's own
  open-eye crop and regains it when the eye reopens;
- it closes and reopens within the time: from the last open frame to the next, less one interval.

``iris_change`` (the darkness of the crop's middle, open minus closed) is recorded as a figure
only: on the real GRID blinks it had either sign, so it decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class BlinkConfig:
    closed_ratio: float = 0.72  # EAR at or under this share of the open baseline: closing
    open_ratio: float = 0.85  # EAR at or over this share: an open frame for the eye's template
    min_ms: float = 50.0
    max_ms: float = 500.0
    # The closed crop's correlation with the open template must fall this far under the open frames'.
    min_appearance_drop: float = 0.05


@dataclass
class BlinkEvent:
    start: int  # first closing frame (index into the sequence)
    end: int  # last closing frame
    duration_ms: float
    min_ear_ratio: float
    appearance_drop: float
    iris_change: float
    ok: bool
    reason: str = ""


def eye_crop(gray: Any, points: Sequence[Point], left: bool, size: tuple[int, int] = (32, 16)) -> np.ndarray:
    """A crop of one eye in a box set by its corners (36/39 or 42/45), resized and normalised."""
    import cv2
    import numpy as np

    a, b = (points[36], points[39]) if left else (points[42], points[45])
    cx, cy = (a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0
    w = max(4.0, abs(b[0] - a[0]) * 1.5)
    h = w * 0.6
    x0, x1 = round(cx - w / 2), round(cx + w / 2)
    y0, y1 = round(cy - h / 2), round(cy + h / 2)
    hh, ww = gray.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(ww, x1), min(hh, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros((size[1], size[0]), dtype=np.float64)
    crop: np.ndarray = cv2.resize(gray[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA).astype(np.float64)
    return crop


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    a = a - a.mean()
    b = b - b.mean()
    d = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float((a * b).sum() / d) if d > 0 else 0.0


def _iris_dark(crop: np.ndarray) -> float:
    """How dark the middle of the crop is against the crop's own brightness (iris, pupil, lashes)."""
    import numpy as np

    h, w = crop.shape
    mid = crop[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    return float((crop.mean() - np.percentile(mid, 20)) / (crop.std() + 1e-6))


def find_blinks(
    ears: Sequence[float],
    times_ms: Sequence[float],
    crops: Sequence[tuple[np.ndarray, np.ndarray]],
    usable: Sequence[bool],
    cfg: BlinkConfig | None = None,
) -> list[BlinkEvent]:
    """The blinks in a sequence. ``usable`` marks frames that can be read (a face, not turned)."""
    import numpy as np

    c = cfg or BlinkConfig()
    idx = [i for i, u in enumerate(usable) if u]
    if len(idx) < 3:
        return []
    baseline = float(np.percentile([ears[i] for i in idx], 75))
    if baseline <= 0:
        return []
    ratio = [ears[i] / baseline if usable[i] else 0.0 for i in range(len(ears))]
    closing = [usable[i] and ratio[i] <= c.closed_ratio for i in range(len(ears))]
    open_idx = [i for i in idx if ratio[i] >= c.open_ratio]
    if not open_idx:
        return []
    tmpl_l = np.median(np.stack([crops[i][0] for i in open_idx]), axis=0)
    tmpl_r = np.median(np.stack([crops[i][1] for i in open_idx]), axis=0)

    def sim(i: int) -> float:
        return (_ncc(crops[i][0], tmpl_l) + _ncc(crops[i][1], tmpl_r)) / 2.0

    def dark(i: int) -> float:
        return (_iris_dark(crops[i][0]) + _iris_dark(crops[i][1])) / 2.0

    open_sim = float(np.median([sim(i) for i in open_idx]))
    open_dark = float(np.median([dark(i) for i in open_idx]))
    events: list[BlinkEvent] = []
    n = len(ears)
    i = 0
    while i < n:
        if not closing[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and closing[j + 1]:
            j += 1
        m = min(ratio[k] for k in range(i, j + 1))
        # Reopened: back at least half way from the deepest closure to the open baseline (people
        # often look down a little after a blink, so not necessarily all the way).
        level = m + 0.5 * (1.0 - m)
        before = i - 1
        while before >= 0 and usable[before] and ratio[before] < level:
            before -= 1
        after = j + 1
        while after < n and usable[after] and ratio[after] < level:
            after += 1
        if before < 0 or after >= n or not usable[before] or not usable[after]:
            i = j + 1
            continue
        span = range(before + 1, after)
        interval = (times_ms[after] - times_ms[before]) / (after - before)
        # Shut from about half an interval after the last open frame to half one before the next.
        duration = times_ms[after] - times_ms[before] - interval
        drop = open_sim - min(sim(k) for k in span)
        iris = open_dark - min(dark(k) for k in span)
        ev = BlinkEvent(before + 1, after - 1, duration, m, drop, iris, ok=True)
        if not c.min_ms <= duration <= c.max_ms:
            ev.ok, ev.reason = False, f"closure of {duration:.0f} ms"
        elif drop < c.min_appearance_drop:
            ev.ok, ev.reason = False, f"eye appearance unchanged (drop {drop:.3f})"
        events.append(ev)
        i = after
    return events
