"""The challenge's pacing is the server's: each asked move is searched over the whole capture in the
asked order and must start when the server allows (``identity.face.capture.StepTiming``), whatever
step windows the client sends; client windows are a claim about the capture that can only narrow.

On real captures: the Intel head-turn clip (right at 0 ms, left at 830 ms, right again at 1670 ms,
12.5 fps) and one GRID clip (a blink at frames 21-22 of 25 fps, seen at 880 ms with every 2nd frame analysed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from identity.face.capture import (
    CaptureInvalid,
    FrameFace,
    StepTiming,
    analyse_frames,
    check_challenge,
    decode_clip,
)
from identity.face.liveness import Step

VIDEO = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "video"
R, L, B = Step.TURN_RIGHT, Step.TURN_LEFT, Step.BLINK


@pytest.fixture(scope="module")
def intel() -> list[FrameFace]:
    cap = decode_clip((VIDEO / "intel" / "head-pose-face-detection-female.gif").read_bytes())
    return analyse_frames(cap, upsample=1)


@pytest.fixture(scope="module")
def grid() -> list[FrameFace]:
    cap = decode_clip((VIDEO / "grid" / "brbk7n.mpg").read_bytes()).subsample(2)
    faces = analyse_frames(cap, upsample=0)
    for f in faces:
        f.index *= 2
    return faces


def test_three_real_turns_in_the_asked_order_pass_with_their_onsets(intel: list[FrameFace]) -> None:
    res = check_challenge([R, L, R], intel, fps=12.5)
    assert res.passed, res.reason
    assert res.step_onsets_ms == [0.0, pytest.approx(830, abs=1), pytest.approx(1670, abs=1)]
    figures = res.figures()
    assert figures["step_onsets_ms"] == [0, 830, 1670] and figures["duration_ms"] == 1830
    # The same moves asked in another order: the clip does not answer it.
    wrong = check_challenge([L, R, L], intel, fps=12.5)
    assert not wrong.passed and wrong.failed_step is L


def test_a_move_too_soon_after_the_previous_one_fails(intel: list[FrameFace]) -> None:
    # The real left turn starts 830 ms after the right one: a server that asks for at least 1 s
    # between two instructions refuses it, with the pace in the reason.
    res = check_challenge([R, L], intel[:20], fps=12.5, timing=StepTiming(min_onset_gap_ms=1000))
    assert not res.passed and res.failed_step is L
    assert "outside the pace the server allows" in res.reason and "830 ms" in res.reason


def test_a_move_long_after_the_previous_one_ended_fails(intel: list[FrameFace]) -> None:
    # The right turn's last turned frame is at 670 ms, the left turn starts at 830 ms.
    ok = check_challenge([R, L], intel[:20], fps=12.5, timing=StepTiming(max_step_delay_ms=200))
    assert ok.passed, ok.reason
    late = check_challenge([R, L], intel[:20], fps=12.5, timing=StepTiming(max_step_delay_ms=150))
    assert not late.passed and late.failed_step is L and "(400-820 ms)" in late.reason


def test_the_first_move_must_come_soon_after_the_capture_starts(grid: list[FrameFace]) -> None:
    ok = check_challenge([B], grid, fps=12.5)
    assert ok.passed, ok.reason
    assert ok.step_onsets_ms == [pytest.approx(880, abs=1)]  # README: frames 21-22; every 2nd: 22
    slow = check_challenge([B], grid, fps=12.5, timing=StepTiming(max_first_delay_ms=500))
    assert not slow.passed and slow.failed_step is B and "0-500 ms" in slow.reason


def test_client_windows_only_narrow_what_the_server_allows(intel: list[FrameFace]) -> None:
    faces = intel[:20]
    # Windows that match the clip: the same verdict as without them.
    assert check_challenge([R, L], faces, step_windows_ms=[(0, 600), (600, 1400)]).passed
    # A window that would admit a move the server's pace refuses does not widen it.
    strict = StepTiming(min_onset_gap_ms=1000)
    wide = check_challenge([R, L], faces, step_windows_ms=[(0, 1500), (0, 1500)], timing=strict)
    assert not wide.passed and "outside the pace the server allows" in wide.reason


@pytest.mark.parametrize(
    ("windows", "why"),
    [
        ([(0, 600)], "count"),
        ([(600, 1400), (0, 600)], "out of order"),
        ([(0, 600), (700, 750)], "too short"),
        ([(0, 600), (5000, 6000)], "after the capture"),
        ([(-100, 600), (600, 1400)], "negative"),
    ],
)
def test_malformed_client_windows_are_refused(
    intel: list[FrameFace], windows: list[tuple[float, float]], why: str
) -> None:
    with pytest.raises(CaptureInvalid) as e:
        check_challenge([R, L], intel[:20], step_windows_ms=windows)
    assert e.value.extra["field"] == "step_windows_ms", why
    assert e.value.status == 422 and e.value.code == "identity.capture_invalid"
