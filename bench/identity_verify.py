"""Verification time per capture, beside raw detect+encode of exactly the frames the judge analyses.

The judge is what ``POST /identity/face/verifications`` runs for a clip or a burst:
``identity.face.capture.capture_job`` (inside one worker of the face engine's pool) with the
API's settings (``CAPTURE_ANALYSE_FPS`` 15, ``CAPTURE_DETECT_UPSAMPLE`` 0). It decodes the clip,
validates every frame (rate, order, duplicates, resolution), analyses every n-th frame (detection
with scores and the one-face rule, 68 landmarks, the 128-d encoding), then checks one continuous
face track, the turns (solvePnP, parallax) and the blinks (eye appearance).

The raw side: ``face_recognition.face_locations(img, upsample)`` + ``face_encodings(img, locs,
model="small")`` on the same frames (same subsampling, same 640-px downscale, same upsample),
decoded beforehand, outside its timing. The judge's figure includes its own decoding.

Captures: the five genuine GRID clips the API test verifies (blink, 25 fps, 3 s, 38 frames
analysed) and the real Intel head-turn clip as a timed JPEG burst (frames 0-19, enlarged 2x,
turn right then left, 20 frames analysed), as in tests/identity/test_face_verification_capture.py.

Rounds alternate raw and judge on each capture; the figure is the median over rounds (at least 3),
and the ratio is the median of the per-round ratios. Also prints where the judge's time goes.

Run: .venv/bin/python bench/identity_verify.py [--rounds 3] [--only bbaf2n]
Figures, not pass/fail; the machine's other load shows in them (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "identity"))
VIDEO = ROOT / "tests" / "fixtures" / "faces" / "video"

ANALYSE_FPS = 15.0  # identity/config.py capture_analyse_fps
UPSAMPLE = 0  # identity/config.py capture_detect_upsample
GOAL = 1.5


@dataclass
class Case:
    name: str
    steps: list[str]
    clip: bytes | None = None
    burst: list[bytes] | None = None
    timestamps_ms: list[float] | None = None

    def judge(self) -> Any:
        from identity.face.capture import capture_job

        return capture_job(
            self.steps,
            clip=self.clip,
            burst=self.burst,
            timestamps_ms=self.timestamps_ms,
            upsample=UPSAMPLE,
            analyse_fps=ANALYSE_FPS,
        )

    def analysed_frames(self) -> list[Any]:
        """The RGB frames the judge runs face work on: decoded, subsampled, downscaled as it does."""
        import numpy as np

        from identity.face.capture import (
            CaptureLimits,
            _downscale,
            decode_burst,
            decode_clip,
            validate_capture,
        )

        lim = CaptureLimits()
        cap = (
            decode_clip(self.clip, lim)
            if self.clip is not None
            else decode_burst(self.burst or [], self.timestamps_ms or [], lim)
        )
        fps = validate_capture(cap, lim)
        every = math.ceil(fps / ANALYSE_FPS - 1e-6) if fps > ANALYSE_FPS else 1
        return [
            np.ascontiguousarray(_downscale(f.image, lim.max_side)[0]) for f in cap.subsample(every).frames
        ]


def cases(only: str | None) -> list[Case]:
    from identity_api_helpers import burst_of, video_bytes

    out = [
        Case(f"GRID {n} clip, blink", ["blink"], clip=video_bytes(f"grid/{n}.mpg"))
        for n in ("bbaf2n", "brbk7n", "lbax4n", "pwij3p", "sbwe5n")
    ]
    frames, ts = burst_of("intel/head-pose-face-detection-female.gif", 0, 19, scale=2.0)
    out.append(
        Case("Intel burst x2, turn R then L", ["turn_right", "turn_left"], burst=frames, timestamps_ms=ts)
    )
    return [c for c in out if only is None or only in c.name]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def breakdown(case: Case) -> dict[str, float]:
    """One judge run split into its stages (the same calls capture_job makes)."""
    from identity.face.capture import (
        CaptureLimits,
        analyse_frames,
        check_challenge,
        decode_burst,
        decode_clip,
        validate_capture,
    )
    from identity.face.liveness import Step

    lim = CaptureLimits()
    t_dec, cap = timed(
        lambda: (
            decode_clip(case.clip, lim)
            if case.clip is not None
            else decode_burst(case.burst or [], case.timestamps_ms or [], lim)
        )
    )
    t_val, fps = timed(lambda: validate_capture(cap, lim))
    every = math.ceil(fps / ANALYSE_FPS - 1e-6) if fps > ANALYSE_FPS else 1
    t_an, faces = timed(
        lambda: analyse_frames(cap.subsample(every), upsample=UPSAMPLE, max_side=lim.max_side)
    )
    t_chk, _res = timed(lambda: check_challenge([Step(s) for s in case.steps], faces, fps=fps))
    return {"decode": t_dec, "validate": t_val, "analyse": t_an, "check": t_chk}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default=None, help="run the captures whose name contains this")
    args = ap.parse_args()
    rounds = max(3, args.rounds)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

    def raw(frames: list[Any]) -> float:
        t = time.perf_counter()
        for img in frames:
            locs = face_recognition.face_locations(img, UPSAMPLE)
            face_recognition.face_encodings(img, locs, num_jitters=1, model="small")
        return time.perf_counter() - t

    todo = cases(args.only)
    frames = {c.name: c.analysed_frames() for c in todo}
    todo[0].judge()  # load the models once, outside the timings
    print(
        f"{len(todo)} captures, {rounds} alternating rounds, "
        f"analyse_fps {ANALYSE_FPS:g}, upsample {UPSAMPLE}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"{'capture':32s} {'frames':>6s} {'raw s':>7s} {'judge s':>8s} {'ratio':>6s}  passed")
    ratios: list[float] = []
    judge_all: list[float] = []
    raw_all: list[float] = []
    for c in todo:
        fr = frames[c.name]
        r_t: list[float] = []
        j_t: list[float] = []
        passed = True
        for k in range(rounds):
            # Alternate which side goes first, so that a load change hits both alike.
            if k % 2 == 0:
                r_t.append(raw(fr))
                t, out = timed(c.judge)
            else:
                t, out = timed(c.judge)
                r_t.append(raw(fr))
            j_t.append(t)
            passed = passed and out.passed and out.problem is None
        ratio = statistics.median(j / r for j, r in zip(j_t, r_t, strict=True))
        ratios.append(ratio)
        judge_all.append(statistics.median(j_t))
        raw_all.append(statistics.median(r_t))
        print(
            f"{c.name:32s} {len(fr):6d} {statistics.median(r_t):7.2f} {statistics.median(j_t):8.2f} "
            f"{ratio:6.2f}  {passed}"
        )
    overall = statistics.median(ratios)
    print(
        f"median ratio judge/raw over the captures: {overall:.2f}x (goal <= {GOAL}x); "
        f"p50 per capture: judge {statistics.median(judge_all):.2f} s, raw {statistics.median(raw_all):.2f} s"
    )
    b = breakdown(todo[0])
    print(
        f"where the judge's time goes ({todo[0].name}): " + ", ".join(f"{k} {v:.3f} s" for k, v in b.items())
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    line = {
        "work": "capture verification (capture_job) vs raw detect+encode of the same frames",
        "goal": f"<= {GOAL}x",
        "figure": f"{overall:.2f}x (median of {len(todo)} captures, {rounds} rounds)",
        "ratio": round(GOAL / max(overall, 1e-9), 3),
    }
    print("BENCH " + json.dumps(line, ensure_ascii=False))


if __name__ == "__main__":
    main()
