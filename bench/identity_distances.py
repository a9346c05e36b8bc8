"""The evidence behind the face tolerance: pairwise distances of the test faces (tests/fixtures/faces).

Prints every same-person and different-person distance with the pipeline's own analysis (HOG,
1 upsample, model "small"), at the detection size used in production (640 px) and at full size,
and the margins either side of a candidate tolerance.

Run: .venv/bin/python bench/identity_distances.py [--tolerance 0.5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FACES = ROOT / "tests" / "fixtures" / "faces"
PEOPLE = {
    "obama_1.jpg": "obama",
    "obama_2.jpg": "obama",
    "obama_3.jpg": "obama",
    "obama_4.jpg": "obama",
    "biden_1.jpg": "biden",
    "biden_2.jpg": "biden",
    "astronaut_collins.png": "collins",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tolerance", type=float, default=0.5)
    args = ap.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from identity.face.engine import analyse_image, face_distance
        from identity.face.image import ImageLimits

    rows: list[dict[str, object]] = []
    for side in (640, 4000):
        limits = ImageLimits(8 << 20, 16_000_000, side)
        enc = {n: analyse_image((FACES / n).read_bytes(), limits).encoding for n in PEOPLE}
        same: list[float] = []
        diff: list[float] = []
        print(f"\n== detection at max side {side} px ==")
        for a, b in itertools.combinations(PEOPLE, 2):
            d = face_distance(enc[a], enc[b])
            (same if PEOPLE[a] == PEOPLE[b] else diff).append(d)
            kind = "same" if PEOPLE[a] == PEOPLE[b] else "diff"
            print(f"  {kind}  {a:22s} {b:22s} {d:.3f}")
        t = args.tolerance
        print(f"  same person: n={len(same)}  min {min(same):.3f}  max {max(same):.3f}")
        print(f"  different:   n={len(diff)}  min {min(diff):.3f}  max {max(diff):.3f}")
        print(
            f"  at tolerance {t}: same-person pairs refused {sum(d > t for d in same)}/{len(same)},"
            f" different-person pairs accepted {sum(d <= t for d in diff)}/{len(diff)};"
            f" margin above the largest same-person distance {t - max(same):+.3f},"
            f" below the smallest different-person distance {min(diff) - t:+.3f}"
        )
        errors = sum(d > t for d in same) + sum(d <= t for d in diff)
        if side == 640:  # make bench's row: the detection size used in production
            rows.append(
                {
                    "work": f"face distances of the test faces at tolerance {t} ({side} px)",
                    "goal": "0 wrong answers",
                    "figure": (
                        f"{errors} wrong of {len(same) + len(diff)}; margins {t - max(same):+.3f} "
                        f"(same person), {min(diff) - t:+.3f} (different)"
                    ),
                    # The goal is met or not: 1 when no pair is answered wrongly.
                    "ratio": 0.0 if errors else 1.0,
                }
            )
    for line in rows:
        print("BENCH " + json.dumps(line, ensure_ascii=False))


if __name__ == "__main__":
    main()
