"""Face verification latency and throughput, beside raw face_recognition on the same frames.

A challenge of N frames at 640 px (obama_1 frontal, a painted blink, obama_4 turned left, obama_2
turned right, repeated to N) is verified against a precomputed reference template, so both sides do
the same face work: detect + encode each frame.

- raw: face_recognition.face_locations(img, 1) + face_encodings(img, locations) per frame, in this
  process, one frame after another (frames already decoded: the raw figure excludes JPEG decoding);
- ours, 1 worker: LocalFaceVerifier through a 1-process pool (decode, limits, detection with scores,
  68 landmarks, encoding, IPC, liveness, matching): the overhead against raw;
- ours, 2 workers: the same with the default pool of 2 (frames of one verification spread over both);
- throughput: verifications per second with 2 workers and several verifications in flight.

Run: .venv/bin/python bench/identity_verify.py [--frames 8] [--runs 10]
Figures, not pass/fail. The machine's other load shows in them: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "identity"))
FACES = ROOT.parent / "shared" / "faces"


def at_640(data: bytes) -> bytes:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    s = 640 / max(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(xs, p))


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=4)
    args = ap.parse_args()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import face_recognition

        from face_synth import paint_closed_eyes
        from identity.face.engine import analyse_image
        from identity.face.image import ImageLimits
        from identity.face.liveness import Step
        from identity.face.pool import FaceEngine
        from identity.face.verifier import LocalFaceVerifier, Reference

    limits = ImageLimits(4 << 20, 16_000_000, 640)
    o1_full = (FACES / "obama_1.jpg").read_bytes()
    a1 = analyse_image(o1_full, limits)
    o1, closed = at_640(o1_full), at_640(paint_closed_eyes(o1_full, a1.points, a1.scale))
    left, right = at_640((FACES / "obama_4.jpg").read_bytes()), at_640((FACES / "obama_2.jpg").read_bytes())
    cycle = [o1, closed, o1, left, o1, right, o1]
    frames = [cycle[i % len(cycle)] for i in range(args.frames)]
    ref = Reference("110101196108047890", "奥巴马", template=analyse_image(
        (FACES / "obama_3.jpg").read_bytes(), limits).encoding)
    steps = [Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT]
    sizes = sorted({Image.open(io.BytesIO(f)).size for f in frames})
    print(f"{args.frames} frames, sizes {sizes}, {args.runs} runs each")

    arrays = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames]
    raw = []
    for _ in range(args.runs):
        t = time.perf_counter()
        for img in arrays:
            locs = face_recognition.face_locations(img, 1, "hog")
            face_recognition.face_encodings(img, locs, 1, "small")
        raw.append(time.perf_counter() - t)
    print(f"raw detect+encode, sequential : p50 {pct(raw, 50) * 1e3:7.0f} ms  p95 {pct(raw, 95) * 1e3:7.0f} ms"
          f"  ({pct(raw, 50) / args.frames * 1e3:.0f} ms/frame)")

    results = {}
    for workers in (1, 2):
        engine = FaceEngine(limits=limits, workers=workers, max_inflight=64, timeout_s=120)
        await engine.start()
        v = LocalFaceVerifier(engine)
        lat = []
        for _ in range(args.runs):
            t = time.perf_counter()
            res = await v.verify(steps=steps, frames=frames, reference=ref)
            lat.append(time.perf_counter() - t)
            assert res.passed, (res.code, res.figures)
        results[workers] = lat
        print(f"verify, {workers} worker{'s' if workers > 1 else ' '}          : p50 {pct(lat, 50) * 1e3:7.0f} ms"
              f"  p95 {pct(lat, 95) * 1e3:7.0f} ms  (x{pct(lat, 50) / pct(raw, 50):.2f} of raw)")
        if workers == 2:
            total = args.runs
            t = time.perf_counter()
            sem = asyncio.Semaphore(args.inflight)

            async def one() -> None:
                async with sem:
                    await v.verify(steps=steps, frames=frames, reference=ref)

            await asyncio.gather(*(one() for _ in range(total)))
            wall = time.perf_counter() - t
            print(f"throughput, 2 workers, {args.inflight} in flight: {total / wall:.2f} verifications/s"
                  f"  ({total * args.frames / wall:.1f} frames/s)")
        await engine.close()
    overhead = pct(results[1], 50) / pct(raw, 50) - 1
    print(f"overhead of the verifier over raw detect+encode (1 worker, p50): {overhead * 100:+.0f}%"
          f"  (goal: at most +30%)")
    print(f"2-worker speed-up over raw sequential: x{pct(raw, 50) / pct(results[2], 50):.2f}"
          f"")


if __name__ == "__main__":
    asyncio.run(main())
