"""Genuine real captures (tests/fixtures/faces/video, see its README): what a live face does must pass.

No real clip holds a whole challenge (neutral, left, right, blink), so each step is tested on the
clips that show it: blinks on the GRID clips (frontal, talking, 25 fps), turns on the Intel
head-turn clip (12.5 fps), one live face track on the hand-held selfie clip, the one-face rule on
the group clip. Frames are subsampled where the README's annotations allow (every 2nd GRID frame:
12.5 fps, every closure still spans a frame).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from app_api.core.errors import AppError
from identity.face.capture import (
    Capture,
    CaptureMultipleFaces,
    FrameFace,
    analyse_frames,
    check_challenge,
    check_continuity,
    decode_clip,
    find_capture_blinks,
    validate_capture,
)
from identity.face.engine import face_distance
from identity.face.liveness import Step

VIDEO = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "video"

# From the fixtures' README: verified blinks (first, last frame) per GRID clip, and the person.
GRID_BLINKS: dict[str, list[tuple[int, int]]] = {
    "bbaf2n": [(42, 46), (50, 53)],
    "brbk7n": [(21, 22)],
    "id2_vcd_swwp2s": [(26, 30), (43, 47), (71, 74)],
    "lbax4n": [(27, 30)],
    "lbbc2a": [],
    "lrwp9a": [(36, 39)],
    "lwbsza": [],
    "pwij3p": [(34, 37), (48, 50)],
    "sbia1a": [],
    "sbwe5n": [(24, 26)],
    "swiz3n": [],
}
PERSON = {
    "bbaf2n": 1,
    "brbk7n": 2,
    "id2_vcd_swwp2s": 3,
    "lbax4n": 4,
    "lbbc2a": 5,
    "lrwp9a": 6,
    "lwbsza": 7,
    "pwij3p": 3,
    "sbia1a": 8,
    "sbwe5n": 9,
    "swiz3n": 10,
}
SUB = 2


def _clip(rel: str) -> Capture:
    return decode_clip((VIDEO / rel).read_bytes())


@pytest.fixture(scope="module")
def grid() -> dict[str, list[FrameFace]]:
    out = {}
    for name in GRID_BLINKS:
        cap = _clip(f"grid/{name}.mpg")
        assert validate_capture(cap) == pytest.approx(25.0, abs=0.01)
        out[name] = analyse_frames(cap.subsample(SUB), upsample=0)
    return out


@pytest.fixture(scope="module")
def intel() -> list[FrameFace]:
    cap = _clip("intel/head-pose-face-detection-female.gif")
    assert validate_capture(cap) == pytest.approx(12.5, abs=0.01)
    # 78-px face: one upsample finds it in 21 of 23 frames (2 and 3, in a fast turn, missed).
    return analyse_frames(cap, upsample=1)


def test_grid_real_blinks_are_detected(grid: dict[str, list[FrameFace]]) -> None:
    found = total = 0
    missed: list[str] = []
    false_blinks: list[str] = []
    for name, blinks in GRID_BLINKS.items():
        faces = grid[name]
        check_continuity(faces)  # each clip is one live face track
        events = find_capture_blinks(faces)
        # Frame numbers in the full clip: analysed frame k is clip frame SUB * k.
        spans = [(SUB * e["start"], SUB * e["end"]) for e in events if e["ok"]]
        for a, b in blinks:
            total += 1
            if any(s <= b + SUB and e >= a - SUB for s, e in spans):
                found += 1
            else:
                missed.append(f"{name} {a}-{b}")
        for s, e in spans:
            if not any(s <= b + SUB and e >= a - SUB for a, b in blinks):
                false_blinks.append(f"{name} {s}-{e}")
        res = check_challenge([Step.BLINK], faces, fps=25.0 / SUB)
        assert res.passed == bool(blinks), (name, res.reason)
    print(
        f"\nGRID blinks detected: {found}/{total} ({100 * found / total:.0f}%); missed {missed}; extra {false_blinks}"
    )
    # The one miss: the eye closes at frame 71 and the 75-frame clip ends before it reopens, so
    # there is no blink to see (closing and reopening) in the clip.
    assert missed == ["id2_vcd_swwp2s 71-74"]
    assert false_blinks == []


def test_grid_impostor_pairs_are_refused(grid: dict[str, list[FrameFace]]) -> None:
    """Two people in the same studio framing, spliced into one clip: never one track; and no
    person's best frame within the 0.5 tolerance of another's."""
    one_per_person = {PERSON[n]: n for n in reversed(list(GRID_BLINKS))}
    accepted_splices: list[str] = []
    accepted_matches: list[str] = []
    pairs = list(itertools.combinations(sorted(one_per_person.values()), 2))
    for a, b in pairs:
        fa, fb = grid[a], grid[b]
        half = len(fa) // 2
        step = fa[1].t_ms - fa[0].t_ms
        spliced = fa[:half] + [
            FrameFace(**{**f.__dict__, "index": half + k, "t_ms": fa[half - 1].t_ms + step * (k + 1)})
            for k, f in enumerate(fb[half:])
        ]
        try:
            check_continuity(spliced)
            accepted_splices.append(f"{a}+{b}")
        except AppError:
            pass
        d = face_distance(fa[0].encoding, fb[0].encoding)
        if d <= 0.5:
            accepted_matches.append(f"{a}~{b} {d:.3f}")
    print(
        f"\nimpostor pairs: {len(pairs)}; splices accepted {len(accepted_splices)}; matches accepted {len(accepted_matches)}"
    )
    assert accepted_splices == [] and accepted_matches == []


def test_intel_real_head_turns_with_direction(intel: list[FrameFace]) -> None:
    # Frames 0-8: nose to the image's left (the woman's right); 10-17: to the image's right (her
    # left); 20-22: her right again (README: 0-7, 11-16, 20-22 by the 2D proxy).
    first = check_challenge([Step.TURN_RIGHT, Step.TURN_LEFT], intel[:20], fps=12.5)
    assert first.passed, first.reason
    second = check_challenge([Step.TURN_LEFT, Step.TURN_RIGHT], intel[9:], fps=12.5)
    assert second.passed, second.reason
    for t in first.turns + second.turns:
        assert t["ok"] and abs(t["pose_yaw_deg"]) >= 30, t
    print(
        "\nIntel turns:",
        [(t["step"], t["start"], t["pose_yaw_deg"], t["parallax_root"]) for t in first.turns + second.turns],
    )
    # The wrong direction or order fails, as does an unasked extra turn.
    wrong = check_challenge([Step.TURN_LEFT, Step.TURN_RIGHT], intel[:20], fps=12.5)
    assert not wrong.passed and wrong.failed_step is Step.TURN_LEFT
    extra = check_challenge([Step.TURN_RIGHT, Step.TURN_LEFT], intel, fps=12.5)
    assert not extra.passed and "unexpected turn_right" in extra.reason


def test_intel_turns_inside_their_step_windows(intel: list[FrameFace]) -> None:
    ok = check_challenge(
        [Step.TURN_RIGHT, Step.TURN_LEFT], intel[:20], step_windows_ms=[(0, 600), (600, 1400)]
    )
    assert ok.passed, ok.reason
    late = check_challenge(
        [Step.TURN_RIGHT, Step.TURN_LEFT], intel[:20], step_windows_ms=[(0, 600), (1000, 1400)]
    )
    assert not late.passed and late.failed_step is Step.TURN_LEFT and "outside its window" in late.reason


def test_selfie_is_one_live_track_and_a_change_of_person_is_not() -> None:
    cap = _clip("openmpf/new_face_video-90_f10-60.avi")
    assert validate_capture(cap) == pytest.approx(29.97, abs=0.01)
    faces = analyse_frames(cap, upsample=0)
    # Clip frames 15-43 (original 25-53): person A alone, hand-held, talking.
    res = check_continuity(faces[5:34])
    assert res.micro_motion > 0.004 and res.nonplanarity > 0.02
    # At original frame ~54 (trimmed 44) the camera passes to person B: not one track.
    with pytest.raises(AppError) as e:
        check_continuity(faces)
    assert e.value.code == "identity.capture_not_continuous"
    assert e.value.extra["frame"] in (33, 34)


def test_group_video_is_refused_as_more_than_one_face() -> None:
    cap = _clip("openmpf/video_01.mp4")
    validate_capture(cap)
    faces = analyse_frames(cap.subsample(6), upsample=1)
    with pytest.raises(CaptureMultipleFaces):
        check_continuity(faces)


def test_capture_job_on_a_real_clip_end_to_end() -> None:
    """The call the verification flow makes, on a whole real clip (75 frames at 25 fps, all
    validated, every 2nd analysed: at most 15 fps by default)."""
    from identity.face.capture import capture_job

    data = (VIDEO / "grid" / "brbk7n.mpg").read_bytes()
    out = capture_job(["blink"], clip=data, upsample=0)
    assert out.passed, out.reason
    assert out.problem is None and len(out.best_encoding) == 128
    assert out.figures["fps"] == 25.0 and 20 <= out.figures["blinks"][0]["start"] <= 22  # README: 21-22
