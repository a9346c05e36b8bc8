"""Synthetic motion built from real detections: eye closure and head yaw in landmark space, and
eye closure painted into a real photo (then detected again by the real engine)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]

# Rough depth of each landmark in front of the jaw-end axis, in units of half the jaw width
# (a generic head: nose tip furthest forward, jaw ends at the axis).
_DEPTH = (
    [0.0, 0.15, 0.3, 0.42, 0.52, 0.6, 0.66, 0.7, 0.72, 0.7, 0.66, 0.6, 0.52, 0.42, 0.3, 0.15, 0.0]
    + [0.55] * 10  # eyebrows
    + [0.62, 0.72, 0.82, 0.9]  # nose bridge
    + [0.7, 0.76, 0.8, 0.76, 0.7]  # nostrils
    + [0.5] * 12  # eyes
    + [0.72] * 20  # mouth
)


def rotate_yaw(points: list[Point], degrees: float) -> list[Point]:
    """The same face turned by ``degrees`` (positive: to the resident's left, nose towards 16)."""
    p = np.asarray(points, dtype=np.float64)
    cx = (p[0, 0] + p[16, 0]) / 2
    half_w = abs(p[16, 0] - p[0, 0]) / 2
    th = math.radians(degrees)
    out = []
    for (x, y), k in zip(p, _DEPTH, strict=True):
        z = k * half_w
        out.append((cx + (x - cx) * math.cos(th) + z * math.sin(th), float(y)))
    return out


def close_eyes(points: list[Point], amount: float) -> list[Point]:
    """Move both eyelids towards the eye's midline; amount 1.0 closes the eye completely."""
    out = list(points)
    for eye in (range(36, 42), range(42, 48)):
        idx = list(eye)
        mid_y = (points[idx[0]][1] + points[idx[3]][1]) / 2
        for j in (1, 2, 4, 5):
            x, y = points[idx[j]]
            out[idx[j]] = (x, y + (mid_y - y) * amount)
    return out


def paint_closed_eyes(image_bytes: bytes, points: list[Point], scale: float) -> bytes:
    """Paint both eyes shut in the photo: each eye filled with cheek skin from just under it and
    a dark lash curve where the lower lid was. ``points`` are in detection coordinates (``scale``
    times the original)."""
    im = Image.open(io.BytesIO(image_bytes)).convert("RGB")
    arr = np.asarray(im)
    draw = ImageDraw.Draw(im)
    for eye in (range(36, 42), range(42, 48)):
        pts = [(x / scale, y / scale) for x, y in (points[i] for i in eye)]
        xs, ys = [q[0] for q in pts], [q[1] for q in pts]
        w = max(xs) - min(xs)
        # Skin: a band of cheek just under the lower lid.
        y0 = int(max(ys) + 0.25 * w)
        y1 = int(max(ys) + 0.5 * w)
        band = arr[max(0, y0) : max(1, y1), int(min(xs)) : int(max(xs))]
        skin = tuple(int(c) for c in band.reshape(-1, 3).mean(axis=0))
        cx, cy = sum(xs) / 6, sum(ys) / 6
        grown = [(cx + (x - cx) * 1.15, cy + (y - cy) * 1.8) for x, y in pts]
        draw.polygon(grown, fill=skin)
        # A closed eye shows as one dark curve where the lower lid was.
        lash = [pts[0], pts[5], pts[4], pts[3]]
        draw.line(lash, fill=(25, 18, 18), width=max(2, int(w / 7)), joint="curve")
    im = im.filter(ImageFilter.GaussianBlur(0.6 / scale))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=92)
    return buf.getvalue()
