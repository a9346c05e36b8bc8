"""Head pose from 68 landmarks with a generic 3D face (OpenCV solvePnP), and the cues of a 3D head.

The 3D points are the widely published average-face coordinates for six landmarks (nose tip,
chin, outer eye corners, mouth corners; arbitrary units, nose tip at the origin, +y up, the face
towards -z... as used with solvePnP in many tutorials): facts about an average head, not code.

A turn of a real head shows, together:
- a yaw from solvePnP in the asked direction;
- nose parallax: the nose tip (30), which stands out of the face, moves sideways against the nose
  root and the inner eye corners (27, 39, 42), by a share of the inter-ocular distance that grows
  with the sine of the yaw. A flat photo squeezed on one side, moved by an affine map or tilted in
  perspective keeps the nose tip on its own line: the "turn" has no parallax;
- non-planarity: the landmarks of the turned frame are not a homography of the frontal frame's
  (a flat picture under any affine or perspective warp is exactly one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

Point = tuple[float, float]

# (landmark index, x, y, z): the average face used with solvePnP.
MODEL_POINTS: tuple[tuple[int, float, float, float], ...] = (
    (30, 0.0, 0.0, 0.0),  # nose tip
    (8, 0.0, -330.0, -65.0),  # chin
    (36, -225.0, 170.0, -135.0),  # outer corner of the eye on the image's left
    (45, 225.0, 170.0, -135.0),  # outer corner of the eye on the image's right
    (48, -150.0, -150.0, -125.0),  # mouth corner, image left
    (54, 150.0, -150.0, -125.0),  # mouth corner, image right
)


def head_pose(points: Sequence[Point], width: int, height: int) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees. Yaw is positive when the nose points to the image's right
    (landmark 16's side: the resident's left in an unmirrored frame)."""
    import cv2
    import numpy as np

    obj = np.array([[x, y, z] for _i, x, y, z in MODEL_POINTS], dtype=np.float64)
    img = np.array([points[i] for i, *_ in MODEL_POINTS], dtype=np.float64)
    focal = float(max(width, height))
    cam = np.array([[focal, 0, width / 2.0], [0, focal, height / 2.0], [0, 0, 1]], dtype=np.float64)
    ok, rvec, _tvec = cv2.solvePnP(obj, img, cam, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return 0.0, 0.0, 0.0
    rot, _ = cv2.Rodrigues(rvec)
    # The model's +y is up and the image's y is down, so the camera sees the model turned by pi
    # about x; remove that and read yaw about the (image) vertical axis.
    flip = np.diag([1.0, -1.0, -1.0])
    r = flip @ rot
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    # Checked on the real turns of the Intel clip: with this flip the sign follows the nose, as
    # ``outline_yaw`` does (positive towards the image's right).
    return yaw, pitch, roll


def nose_parallax(points: Sequence[Point]) -> tuple[float, float]:
    """Sideways offset of the nose tip (30) along the eye line, in inter-ocular distances (outer
    corners), positive towards the image's right: (from the nose root 27, from the middle of the
    inner eye corners 39 and 42). The nose root lies on the nose's own line, so squeezing one side
    of a photo about the nose cannot move the first; the second also sees the inner corners."""
    import numpy as np

    p = np.asarray(points, dtype=np.float64)
    axis = p[45] - p[36]
    iod = float(np.linalg.norm(axis)) or 1.0
    u = axis / iod
    root = float((p[30] - p[27]) @ u) / iod
    inner = float((p[30] - (p[39] + p[42]) / 2.0) @ u) / iod
    return root, inner


def outline_yaw(points: Sequence[Point]) -> float:
    """The 2D proxy of ``identity.face.liveness.yaw``: nose tip between jaw ends, in [-1, 1]."""
    from identity.face.liveness import yaw

    return yaw(points)


def planar_residual(ref: np.ndarray, pts: np.ndarray) -> float:
    """Homography residual of the rigid landmarks (jaw, brows, nose, eye corners), in IOD units."""
    import numpy as np

    from identity.face.capture import homography_residual

    idx = [*range(0, 31), 36, 39, 42, 45]
    iod = float(np.linalg.norm(pts[45] - pts[36])) or 1.0
    return homography_residual(ref[idx], pts[idx]) / iod
