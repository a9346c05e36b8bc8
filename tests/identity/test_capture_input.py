"""Bad captures are refused before any face work with a clear problem (identity.capture_*)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from app_api.core.errors import AppError
from identity.face.capture import (
    Capture,
    CaptureDuplicateFrames,
    CaptureFrameRate,
    CaptureInvalid,
    CaptureLimits,
    CaptureMixedResolution,
    CaptureOutOfOrder,
    CaptureTooLarge,
    CaptureTooLong,
    CaptureTooShort,
    Frame,
    decode_burst,
    decode_clip,
    validate_capture,
)

VIDEO = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "video"


def _frames(n: int, fps: float = 30.0, size: tuple[int, int] = (64, 48), start: float = 0.0) -> list[Frame]:
    rng = np.random.default_rng(n)
    return [
        Frame(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), start + k * 1000.0 / fps)
        for k in range(n)
    ]


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_a_good_burst_passes_and_reports_its_frame_rate() -> None:
    assert validate_capture(Capture(_frames(45, fps=30.0))) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("fps", "ok"),
    [(2.0, False), (5.0, False), (8.0, True), (60.0, True), (120.0, False), (1000.0, False)],
)
def test_frame_rate_must_be_a_cameras(fps: float, ok: bool) -> None:
    n = max(10, int(fps * 1.5))
    cap = Capture(_frames(n, fps=fps))
    if ok:
        validate_capture(cap, CaptureLimits(max_frames=1000))
    else:
        with pytest.raises(CaptureFrameRate) as e:
            validate_capture(cap, CaptureLimits(max_frames=2000))
        assert e.value.code == "identity.capture_frame_rate"
        assert e.value.title == "拍摄帧率不符合要求，请使用手机相机直接拍摄" and e.value.status == 422


def test_uneven_timing_is_refused() -> None:
    frames = _frames(40)
    for f in frames[20:]:
        f.t_ms += 400.0  # a 433 ms hole in a 30 fps clip: frames removed or spliced
    with pytest.raises(CaptureFrameRate) as e:
        validate_capture(Capture(frames))
    assert e.value.extra["frame"] == 20


def test_too_short() -> None:
    with pytest.raises(CaptureTooShort) as e:
        validate_capture(Capture(_frames(5)))
    assert e.value.code == "identity.capture_too_short" and e.value.extra["min_frames"] == 8
    with pytest.raises(CaptureTooShort) as e:
        validate_capture(Capture(_frames(20, fps=30.0)))  # 633 ms
    assert "毫秒" in e.value.detail


def test_too_long() -> None:
    with pytest.raises(CaptureTooLong):
        validate_capture(Capture(_frames(25, fps=1.0)), CaptureLimits(min_fps=0.5))


def test_frames_out_of_order() -> None:
    frames = _frames(40)
    frames[10].t_ms, frames[11].t_ms = frames[11].t_ms, frames[10].t_ms
    with pytest.raises(CaptureOutOfOrder) as e:
        validate_capture(Capture(frames))
    assert e.value.code == "identity.capture_out_of_order" and e.value.extra["frame"] == 11
    same = _frames(40)
    same[5].t_ms = same[4].t_ms
    with pytest.raises(CaptureOutOfOrder):
        validate_capture(Capture(same))


def test_duplicated_frames() -> None:
    frames = _frames(40)
    frames[30] = Frame(frames[12].image.copy(), frames[30].t_ms)
    with pytest.raises(CaptureDuplicateFrames) as e:
        validate_capture(Capture(frames))
    assert e.value.extra == {"frame": 30, "same_as": 12}
    assert e.value.to_problem()["title"] == "拍摄内容包含重复的画面"


def test_mixed_resolutions() -> None:
    frames = _frames(40)
    frames[7] = _frames(1, size=(48, 64))[0]
    frames[7].t_ms = 7 * 1000.0 / 30
    with pytest.raises(CaptureMixedResolution) as e:
        validate_capture(Capture(frames))
    assert e.value.extra["frame"] == 7 and e.value.status == 422


def test_burst_decoding_and_its_refusals() -> None:
    frames = _frames(12, fps=10.0)
    jpegs = [_jpeg(f.image) for f in frames]
    cap = decode_burst(jpegs, [f.t_ms for f in frames])
    assert len(cap.frames) == 12 and cap.frames[0].image.shape == (48, 64, 3)
    assert validate_capture(cap) == pytest.approx(10.0)
    with pytest.raises(CaptureInvalid) as e:
        decode_burst([*jpegs[:3], b"not an image at all", *jpegs[4:]], [f.t_ms for f in frames])
    assert e.value.extra["frame"] == 3 and e.value.code == "identity.capture_invalid"
    gif = io.BytesIO()
    Image.fromarray(frames[0].image).save(gif, format="GIF")
    with pytest.raises(CaptureInvalid):
        decode_burst([gif.getvalue(), *jpegs[1:]], [f.t_ms for f in frames])
    with pytest.raises(CaptureInvalid):
        decode_burst(jpegs, [0.0, 100.0])
    with pytest.raises(CaptureTooLarge):
        decode_burst(jpegs, [f.t_ms for f in frames], CaptureLimits(max_bytes=sum(map(len, jpegs)) - 1))
    huge = io.BytesIO()
    Image.new("RGB", (4000, 3000)).save(huge, format="JPEG")
    with pytest.raises(CaptureTooLarge) as big:
        decode_burst([huge.getvalue(), *jpegs[1:]], [f.t_ms for f in frames])
    assert big.value.status == 413 and big.value.extra["frame"] == 0


def test_clip_decoding_and_its_refusals(tmp_path: Path) -> None:
    cap = decode_clip((VIDEO / "grid" / "brbk7n.mpg").read_bytes())
    assert len(cap.frames) == 75 and cap.frames[1].t_ms == pytest.approx(40.0)
    with pytest.raises(CaptureInvalid):
        decode_clip(b"\x00" * 4096)
    with pytest.raises(CaptureInvalid):
        decode_clip(b"short")
    with pytest.raises(CaptureTooLarge):
        decode_clip(b"\x00" * 2048, CaptureLimits(max_bytes=1024))
    # A clip written at 2 fps (frames hand-picked and wrapped in a video): the rate gives it away.
    path = tmp_path / "slow.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 2.0, (64, 48))
    for f in _frames(10):
        vw.write(f.image)
    vw.release()
    slow = decode_clip(path.read_bytes())
    assert [round(f.t_ms) for f in slow.frames[:3]] == [0, 500, 1000]
    with pytest.raises(CaptureFrameRate):
        validate_capture(slow)


def test_every_capture_problem_is_a_4xx_problem_with_a_chinese_title() -> None:
    import identity.face.capture as m

    classes = [
        v for v in vars(m).values() if isinstance(v, type) and issubclass(v, AppError) and v is not AppError
    ]
    assert len(classes) >= 12
    for cls in classes:
        assert cls.code.startswith("identity.capture_")
        assert 400 <= cls.status < 500
        assert any("\u4e00" <= ch <= "\u9fff" for ch in cls.title)


def test_capture_job_sends_refusals_back_as_data_and_reraises_them() -> None:
    import pickle

    from identity.face.capture import capture_job

    frames = _frames(12, fps=2.0)
    out = capture_job(
        ["blink"], burst=[_jpeg(f.image) for f in frames], timestamps_ms=[f.t_ms for f in frames]
    )
    out = pickle.loads(pickle.dumps(out))  # what crosses the process boundary
    assert not out.passed and out.problem is not None and out.problem[0] == "identity.capture_frame_rate"
    with pytest.raises(CaptureFrameRate) as e:
        out.raise_problem()
    assert e.value.extra["fps"] == 2.0 and e.value.detail.startswith("帧率 2.0")
