"""The face engine on real photos (tests/fixtures/faces): decoding limits, the one-face rule, distances."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import pytest
from identity_helpers import LIMITS, face_bytes, png_header_only
from PIL import Image

from identity.face.engine import (
    Detection,
    FaceAnalysis,
    analyse_image,
    choose_face,
    face_distance,
    warm_up,
)
from identity.face.image import ImageLimits, ImageProblem, decode_for_detection, probe_image

TOLERANCE = 0.5  # the configured default (identity.config)
Analysed: TypeAlias = Callable[[str], FaceAnalysis]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("obama_1.jpg", "obama_2.jpg"),
        ("obama_1.jpg", "obama_3.jpg"),
        ("obama_1.jpg", "obama_4.jpg"),
        ("obama_2.jpg", "obama_3.jpg"),
        ("obama_3.jpg", "obama_4.jpg"),
        ("biden_1.jpg", "biden_2.jpg"),
    ],
)
def test_same_person_in_different_photos_matches(analysed: Analysed, a: str, b: str) -> None:
    d = face_distance(analysed(a).encoding, analysed(b).encoding)
    assert d <= TOLERANCE, f"{a} vs {b}: {d:.3f}"


@pytest.mark.parametrize("obama", ["obama_1.jpg", "obama_2.jpg", "obama_3.jpg", "obama_4.jpg"])
@pytest.mark.parametrize("biden", ["biden_1.jpg", "biden_2.jpg"])
def test_different_people_do_not_match(analysed: Analysed, obama: str, biden: str) -> None:
    d = face_distance(analysed(obama).encoding, analysed(biden).encoding)
    assert d > TOLERANCE + 0.2, f"{obama} vs {biden}: {d:.3f}"


def test_image_without_a_face_is_refused_as_no_face(analysed: Analysed) -> None:
    a = analysed("no_face.jpg")
    assert a.problem == "no_face"
    assert a.encoding == [] and a.points == []


def test_two_people_are_refused_as_multiple_faces(analysed: Analysed) -> None:
    a = analysed("two_faces_obama_biden.jpg")
    assert a.problem == "multiple_faces"
    assert a.encoding == []


def test_false_face_on_the_mission_patch_does_not_make_two_faces(analysed: Analysed) -> None:
    a = analysed("astronaut_collins.png")
    # The detector does see the patch (a second box about as large as the face) ...
    assert len(a.detections) == 2
    # ... but it is weak, and the subject is Collins' face in the upper half, not the patch below.
    assert a.ok and a.face is not None
    assert a.face.bottom < 512 / 2
    assert len(a.encoding) == 128 and len(a.points) == 68


def test_choose_face_rules() -> None:
    face = Detection(top=10, right=110, bottom=110, left=10, score=1.5)
    small_background = Detection(top=0, right=30, bottom=30, left=0, score=1.2)
    weak_same_size = Detection(top=200, right=300, bottom=300, left=200, score=0.1)
    second_person = Detection(top=200, right=290, bottom=290, left=200, score=1.1)
    assert choose_face([]) == (None, [])
    assert choose_face([small_background, face]) == (face, [])
    assert choose_face([weak_same_size, face]) == (face, [])
    assert choose_face([face, second_person]) == (face, [second_person])
    # A lone weak detection is still the face (face_recognition itself would use it).
    assert choose_face([weak_same_size]) == (weak_same_size, [])


def test_large_photos_are_downscaled_before_detection(faces_dir: object) -> None:
    img, info, scale = decode_for_detection(face_bytes("obama_3.jpg"), LIMITS)
    assert sorted((info.width, info.height)) == [1434, 2333]
    assert max(img.shape[:2]) == 640
    assert scale == pytest.approx(640 / 2333, rel=0.01)
    # Never upscaled.
    img, _info, scale = decode_for_detection(face_bytes("astronaut_collins.png"), LIMITS)
    assert img.shape[:2] == (512, 512) and scale == 1.0


def test_exif_rotated_phone_photo_is_turned_upright(analysed: Analysed) -> None:
    # Phones store portrait photos sideways with an EXIF orientation tag.
    im = Image.open(io.BytesIO(face_bytes("obama_1.jpg")))
    sideways = im.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    sideways.save(buf, format="JPEG", quality=92, exif=exif.tobytes())
    a = analyse_image(buf.getvalue(), LIMITS)
    assert a.ok, a.problem
    assert face_distance(a.encoding, analysed("obama_1.jpg").encoding) < 0.2


def test_fifty_megapixel_image_is_refused_from_its_header() -> None:
    data = png_header_only(8660, 5774)  # 50.0 MP
    with pytest.raises(ImageProblem) as e:
        probe_image(data, LIMITS)
    assert e.value.kind == "image_too_many_pixels"
    # Load the dlib models first (about a second, once per process), so that the time below is the
    # analysis's own and does not depend on whether earlier tests already loaded them.
    warm_up()
    t = time.perf_counter()
    a = analyse_image(data, LIMITS)
    # Had the pixels been decoded this truncated file would have been "corrupt"; decoding 50 MP
    # would also take far longer than this.
    assert a.problem == "image_too_many_pixels"
    assert time.perf_counter() - t < 0.5


def test_twelve_megapixel_phone_photo_is_accepted() -> None:
    info = probe_image(png_header_only(4000, 3000), LIMITS)
    assert (info.width, info.height) == (4000, 3000)


def test_oversized_file_is_refused_before_parsing() -> None:
    limits = ImageLimits(max_bytes=100_000, max_pixels=LIMITS.max_pixels, max_side=640)
    a = analyse_image(face_bytes("obama_3.jpg"), limits)  # 596 kB
    assert a.problem == "image_too_large"


def _half_jpeg() -> bytes:
    full = face_bytes("obama_1.jpg")
    return full[: len(full) // 2]


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 180, 160)).save(buf, format="GIF")
    return buf.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda: b"",
        lambda: b"%PDF-1.7 not an image at all",
        lambda: "身份证照片".encode(),
        _half_jpeg,
        _gif,  # a real image, but not a format accepted for faces
    ],
    ids=["empty", "pdf", "text", "truncated_jpeg", "gif"],
)
def test_corrupt_or_non_image_uploads_are_refused(make: Callable[[], bytes]) -> None:
    a = analyse_image(make(), LIMITS)
    assert a.problem == "image_invalid"
    assert a.encoding == []


def test_landmarks_and_encoding_shapes(analysed: Analysed) -> None:
    a = analysed("obama_1.jpg")
    lm = a.landmarks()
    assert len(lm["left_eye"]) == 6 and len(lm["chin"]) == 17
    # Landmarks lie inside the detection image and around the detected face.
    assert a.face is not None
    xs = np.array([p[0] for p in a.points])
    assert a.face.left - 20 < xs.min() and xs.max() < a.face.right + 20
