"""Blink and head-turn detection on landmark sequences built from real detections.

The starting points are the 68 landmarks the real engine found on tests/fixtures/faces photos; the
motion (eye closure, yaw) is synthesised in landmark space, with a little per-frame jitter such as
a hand-held phone gives.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from face_synth import close_eyes, rotate_yaw

from identity.face.engine import FaceAnalysis
from identity.face.liveness import LivenessConfig, Step, check_liveness, ear, yaw

Points = list[tuple[float, float]]
B, L, R = Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT


def jitter(points: Points, seed: int, px: float = 0.6) -> Points:
    rnd = random.Random(seed)
    return [(x + rnd.uniform(-px, px), y + rnd.uniform(-px, px)) for x, y in points]


def sequence(base: Points, moves: list[tuple[str, float]]) -> list[Points]:
    """("open", 0) | ("close", amount) | ("yaw", degrees) per frame, each jittered."""
    frames = []
    for i, (kind, v) in enumerate(moves):
        p = base
        if kind == "close":
            p = close_eyes(base, v)
        elif kind == "yaw":
            p = rotate_yaw(base, v)
        frames.append(jitter(p, seed=i))
    return frames


OPEN = ("open", 0.0)
BLINK = [OPEN, ("close", 0.5), ("close", 0.95), ("close", 0.4), OPEN]
LEFT = [("yaw", 10.0), ("yaw", 25.0), ("yaw", 10.0), OPEN]
RIGHT = [("yaw", -10.0), ("yaw", -25.0), ("yaw", -10.0), OPEN]


@pytest.fixture(scope="module")
def obama(analysed: Callable[[str], FaceAnalysis]) -> Points:
    return analysed("obama_1.jpg").points


def test_real_detections_have_open_eyes_and_frontal_yaw(obama: Points) -> None:
    assert 0.18 < ear(obama) < 0.4
    assert abs(yaw(obama)) < 0.1


def test_blink_then_turns_in_the_asked_order_pass(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, *BLINK, *LEFT, *RIGHT])
    res = check_liveness([B, L, R], frames)
    assert res.passed, res.reason
    assert res.step_frames[0] < res.step_frames[1] < res.step_frames[2]
    # The best frame (compared with the ID photo) is a frontal open-eye one.
    assert res.ears[res.best_frame] >= 0.85 * res.baseline_ear
    assert abs(res.yaws[res.best_frame] - res.neutral_yaw) < 0.05


@pytest.mark.parametrize("order", [[L, B, R], [R, L, B], [L, R, B], [B, R, L]])
def test_every_order_of_the_challenge_is_detected(obama: Points, order: list[Step]) -> None:
    parts = {B: BLINK, L: LEFT, R: RIGHT}
    frames = sequence(obama, [OPEN, OPEN] + [m for s in order for m in parts[s]])
    assert check_liveness(order, frames).passed


def test_steps_done_in_another_order_fail(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, *RIGHT, *BLINK, *LEFT])
    res = check_liveness([L, B, R], frames)
    assert not res.passed
    assert res.failed_step is L


def test_a_still_photo_repeated_as_every_frame_fails(obama: Points) -> None:
    frames = [list(obama)] * 10
    res = check_liveness([B, L, R], frames)
    assert not res.passed and res.failed_step is B
    for first in (L, R):
        assert check_liveness([first, B], frames).failed_step is first


def test_a_still_photo_with_camera_jitter_fails(obama: Points) -> None:
    frames = [jitter(obama, seed=i, px=1.0) for i in range(12)]
    assert not check_liveness([B, L, R], frames).passed


def test_a_still_of_a_turned_head_does_not_count_as_a_turn(analysed: Callable[[str], FaceAnalysis]) -> None:
    # obama_4.jpg: head turned to his left (yaw about +0.44) in the photo itself.
    turned = analysed("obama_4.jpg").points
    assert yaw(turned) > 0.3
    frames = [jitter(turned, seed=i) for i in range(8)]
    assert check_liveness([L], frames).failed_step is L


def test_eyes_that_close_and_never_reopen_are_not_a_blink(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, OPEN, ("close", 0.9), ("close", 0.9)])
    assert check_liveness([B], frames).failed_step is B


def test_squinting_is_not_a_blink(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, ("close", 0.25), ("close", 0.3), OPEN, OPEN])
    assert check_liveness([B], frames).failed_step is B


def test_blink_of_someone_whose_open_eyes_measure_like_a_smile(obama: Points) -> None:
    # Smiling open-eye stills measured EAR 0.154, under a fixed 0.2 threshold: relative to the
    # person's own baseline, only a real closure counts.
    smiling = close_eyes(obama, 0.3)
    assert ear(smiling) < 0.17
    assert check_liveness([B], sequence(smiling, [OPEN] * 8)).failed_step is B
    res = check_liveness([B], sequence(smiling, [OPEN, OPEN, ("close", 0.9), OPEN, OPEN]))
    assert res.passed
    assert res.baseline_ear < 0.17


def test_turn_in_the_wrong_direction_fails(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, *LEFT, OPEN])
    assert check_liveness([L], frames).passed
    assert check_liveness([R], frames).failed_step is R


def test_a_slight_head_movement_is_not_a_turn(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, ("yaw", 5.0), ("yaw", 7.0), OPEN, ("yaw", -6.0), OPEN])
    assert check_liveness([L], frames).failed_step is L
    assert check_liveness([R], frames).failed_step is R


def test_turn_threshold_is_configurable(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, ("yaw", 12.0), OPEN, OPEN])
    assert check_liveness([L], frames, LivenessConfig(turn_threshold=0.15)).passed
    assert not check_liveness([L], frames, LivenessConfig(turn_threshold=0.3)).passed


def test_turned_frames_do_not_fake_a_blink(obama: Points) -> None:
    # Foreshortening while turning changes the EAR; it must not be read as a closure.
    frames = sequence(obama, [OPEN, OPEN, *LEFT, *RIGHT, OPEN])
    assert check_liveness([B], frames).failed_step is B


def test_blink_on_a_smiling_real_face(analysed: Callable[[str], FaceAnalysis]) -> None:
    biden = analysed("biden_2.jpg").points  # smiling close-up
    frames = sequence(biden, [OPEN, OPEN, *BLINK, *RIGHT, *LEFT])
    assert check_liveness([B, R, L], frames).passed
    assert not check_liveness([B, R, L], [jitter(biden, i) for i in range(10)]).passed


def test_a_recording_covering_several_orders_fails(obama: Points) -> None:
    # Turning left, right and left again (blinking in between) contains [L, B, R] and [R, B, L]
    # as subsequences: a replayed recording like this must not pass either challenge.
    frames = sequence(obama, [OPEN, OPEN, *LEFT, *BLINK, *RIGHT, *BLINK, *LEFT])
    for order in ([L, B, R], [R, B, L]):
        res = check_liveness(order, frames)
        assert not res.passed, order


def test_an_unasked_natural_blink_is_tolerated(obama: Points) -> None:
    frames = sequence(obama, [OPEN, OPEN, *BLINK, *LEFT, *BLINK, *RIGHT])
    assert check_liveness([B, L, R], frames).passed
    frames = sequence(obama, [OPEN, OPEN, *BLINK, *LEFT, *RIGHT])
    assert check_liveness([L, R], frames).passed
