"""The local verifier end to end: real photos through the process pool.

What this proves and does not: the frames are real photos of one person (obama_1 frontal,
obama_4 turned to his left, obama_2 turned to his right) plus obama_1 with the eyes painted shut,
each detected and encoded by the real engine. It proves the pipeline (limits, one face, same
person, ordered motions, match against the reference photo) on real detections; it does not
prove that a real blink on a real phone is caught, nor anything about presentation attacks
beyond a replayed still (see docs/identity.md).
"""

from __future__ import annotations

import asyncio

import pytest
from identity_helpers import LIMITS, challenge_frames, face_bytes

from identity import errors
from identity.face.image import ImageLimits
from identity.face.liveness import Step
from identity.face.pool import FaceEngine
from identity.face.verifier import LocalFaceVerifier, Reference, raise_for_result

B, L, R = Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT


@pytest.fixture(scope="module")
def frames(motion_frames: dict[str, bytes]) -> dict[str, bytes]:
    return motion_frames


def obama_ref() -> Reference:
    return Reference(id_number="110101196108047890", name="奥巴马", photo=face_bytes("obama_3.jpg"))


@pytest.fixture(scope="module")
def verifier(engine: FaceEngine) -> LocalFaceVerifier:
    return LocalFaceVerifier(engine, tolerance=0.5, frame_tolerance=0.5, min_frames=4, max_frames=16)


async def test_same_person_doing_the_challenge_passes(verifier: LocalFaceVerifier, frames: dict) -> None:
    res = await verifier.verify(
        steps=[B, L, R], frames=challenge_frames(frames, ["blink", "left", "right"]), reference=obama_ref()
    )
    assert res.passed, (res.code, res.detail, res.figures)
    assert res.liveness_passed
    assert res.distance is not None and res.distance <= 0.5
    assert res.template is not None and len(res.template) == 128
    # The best frame is a frontal open-eye one.
    assert res.best_frame in (0, 2, 4, 6)
    audit = res.audit_data()
    assert audit["distance"] == round(res.distance, 4) and audit["passed"] is True
    assert "template" not in audit


async def test_different_person_fails_with_the_distance(verifier: LocalFaceVerifier, frames: dict) -> None:
    biden = Reference(id_number="110101194211207891", name="拜登", photo=face_bytes("biden_1.jpg"))
    res = await verifier.verify(
        steps=[L, B, R], frames=challenge_frames(frames, ["left", "blink", "right"]), reference=biden
    )
    assert not res.passed
    assert res.code == "identity.face_mismatch"
    assert res.liveness_passed
    assert res.distance is not None and res.distance > 0.7
    assert res.template is None
    with pytest.raises(errors.FaceMismatch):
        raise_for_result(res)


async def test_replayed_still_photo_fails_liveness(verifier: LocalFaceVerifier, frames: dict) -> None:
    res = await verifier.verify(steps=[B, L, R], frames=[frames["front"]] * 7, reference=obama_ref())
    assert not res.passed
    assert res.code == "identity.liveness_failed"
    assert res.failed_step == "blink"
    # The match itself was computed and is logged even though liveness failed.
    assert res.distance is not None and res.distance <= 0.5
    with pytest.raises(errors.LivenessFailed) as e:
        raise_for_result(res)
    assert e.value.extra["failed_step"] == "blink"


async def test_frames_done_in_the_wrong_order_fail(verifier: LocalFaceVerifier, frames: dict) -> None:
    res = await verifier.verify(
        steps=[R, B, L], frames=challenge_frames(frames, ["blink", "left", "right"]), reference=obama_ref()
    )
    assert not res.passed and res.code == "identity.liveness_failed"


async def test_a_different_person_in_one_frame_is_refused(verifier: LocalFaceVerifier, frames: dict) -> None:
    seq = challenge_frames(frames, ["blink", "left", "right"])
    seq[4] = face_bytes("biden_2.jpg")
    res = await verifier.verify(steps=[B, L, R], frames=seq, reference=obama_ref())
    assert not res.passed
    assert res.code == "identity.frames_not_same_person"
    assert max(res.frame_distances) > 0.7


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("no_face.jpg", errors.NoFace),
        ("two_faces_obama_biden.jpg", errors.MultipleFaces),
        (b"GIF89a not really", errors.ImageInvalid),
    ],
)
async def test_an_unusable_frame_is_refused_with_its_own_code(
    verifier: LocalFaceVerifier, frames: dict, bad: str | bytes, error: type[errors.AppError]
) -> None:
    seq = challenge_frames(frames, ["blink", "left", "right"])
    seq[3] = face_bytes(bad) if isinstance(bad, str) else bad
    with pytest.raises(error) as e:
        await verifier.verify(steps=[B, L, R], frames=seq, reference=obama_ref())
    assert e.value.extra["frame"] == 3
    assert "第 4 帧" in e.value.detail


async def test_frame_count_and_size_limits_are_checked_before_face_work(
    verifier: LocalFaceVerifier, frames: dict
) -> None:
    with pytest.raises(errors.TooManyFrames):
        await verifier.verify(steps=[B], frames=[frames["front"]] * 17, reference=obama_ref())
    with pytest.raises(errors.TooFewFrames):
        await verifier.verify(steps=[B], frames=[frames["front"]] * 2, reference=obama_ref())
    small = LocalFaceVerifier(verifier.engine, max_total_bytes=500_000)
    with pytest.raises(errors.ImageTooLarge):
        await small.verify(steps=[B], frames=[frames["front"]] * 4, reference=obama_ref())


async def test_reference_photo_without_a_face_is_reported(verifier: LocalFaceVerifier, frames: dict) -> None:
    ref = Reference(id_number="110101196108047890", name="奥巴马", photo=face_bytes("no_face.jpg"))
    with pytest.raises(errors.ReferencePhotoUnusable):
        await verifier.verify(steps=[B], frames=[frames["front"]] * 4, reference=ref)


async def test_stored_template_can_stand_in_for_the_photo(verifier: LocalFaceVerifier, frames: dict) -> None:
    first = await verifier.verify(
        steps=[B, L, R], frames=challenge_frames(frames, ["blink", "left", "right"]), reference=obama_ref()
    )
    assert first.template is not None
    again = await verifier.verify(
        steps=[R, L, B],
        frames=challenge_frames(frames, ["right", "left", "blink"]),
        reference=Reference(id_number="110101196108047890", name="奥巴马", template=first.template),
    )
    assert again.passed, again.code


async def test_engine_times_out_and_stays_bounded() -> None:
    eng = FaceEngine(
        limits=ImageLimits(LIMITS.max_bytes, LIMITS.max_pixels, 640),
        workers=1,
        max_inflight=1,
        timeout_s=0.05,
    )
    try:
        with pytest.raises(errors.FaceEngineTimeout):
            # The first job also pays for starting the worker and loading the models: over 50 ms.
            await eng.analyse(face_bytes("obama_3.jpg"))
        # Its slot stays taken until the worker really finishes, so the next caller is refused.
        assert eng.inflight == 1
        with pytest.raises(errors.FaceEngineBusy):
            await eng.analyse(face_bytes("obama_1.jpg"))
        eng.timeout_s = 30
        a = await eng.analyse(face_bytes("obama_1.jpg"))
        assert a.ok
        await asyncio.sleep(0)
        assert eng.inflight == 0
    finally:
        await eng.close()
