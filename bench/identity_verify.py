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
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "identity"))
FACES = ROOT / "tests" / "fixtures" / "faces"


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
    ref = Reference(
        "110101196108047890",
        "奥巴马",
        template=analyse_image((FACES / "obama_3.jpg").read_bytes(), limits).encoding,
    )
    steps = [Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT]
    sizes = sorted({Image.open(io.BytesIO(f)).size for f in frames})
    print(f"{args.frames} frames, sizes {sizes}, {args.runs} runs each")

    arrays = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames]

    def raw_once() -> float:
        t = time.perf_counter()
        for img in arrays:
            locs = face_recognition.face_locations(img, 1, "hog")
            face_recognition.face_encodings(img, locs, 1, "small")
        return time.perf_counter() - t

    engines = {w: FaceEngine(limits=limits, workers=w, max_inflight=64, timeout_s=120) for w in (1, 2)}
    for e in engines.values():
        await e.start()
    verifiers = {w: LocalFaceVerifier(e) for w, e in engines.items()}

    async def verify_once(w: int) -> float:
        t = time.perf_counter()
        res = await verifiers[w].verify(steps=steps, frames=frames, reference=ref)
        assert res.passed, (res.code, res.figures)
        return time.perf_counter() - t

    # Interleaved, so that load from elsewhere on a shared machine hits all three alike; the
    # overhead is the median of per-round ratios.
    raw: list[float] = []
    lat: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.runs):
        raw.append(raw_once())
        lat[1].append(await verify_once(1))
        lat[2].append(await verify_once(2))

    def line(name: str, xs: list[float]) -> str:
        return f"{name:32s}: p50 {pct(xs, 50) * 1e3:6.0f} ms  p95 {pct(xs, 95) * 1e3:6.0f} ms"

    print(line("raw detect+encode, sequential", raw) + f"  ({pct(raw, 50) / args.frames * 1e3:.0f} ms/frame)")
    print(line("verify, 1 worker", lat[1]))
    print(line("verify, 2 workers", lat[2]))
    ratio = [v / r for v, r in zip(lat[1], raw, strict=True)]
    print(
        f"overhead of the verifier over raw detect+encode (1 worker, median of paired rounds): "
        f"{(pct(ratio, 50) - 1) * 100:+.0f}%  (goal: at most +30%)"
    )
    print(f"2 workers vs raw sequential, p50: x{pct(raw, 50) / pct(lat[2], 50):.2f} faster")

    t = time.perf_counter()
    sem = asyncio.Semaphore(args.inflight)

    async def one() -> None:
        async with sem:
            await verifiers[2].verify(steps=steps, frames=frames, reference=ref)

    await asyncio.gather(*(one() for _ in range(args.runs)))
    wall = time.perf_counter() - t
    print(
        f"throughput, 2 workers, {args.inflight} in flight: {args.runs / wall:.2f} verifications/s"
        f"  ({args.runs * args.frames / wall:.1f} frames/s)"
    )
    for e in engines.values():
        await e.close()
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    asyncio.run(main())
