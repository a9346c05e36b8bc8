"""Adapter for Tencent Cloud FaceID (腾讯云人脸核身), a licensed real-person service, through its SDK.

Action: ``LivenessRecognition`` (API version 2018-03-01): the video of the resident's capture, their
ID number and name; the service first decides whether the video shows a live person and then
compares that person with the ID photo held by the authoritative registry (权威库), answering
``Sim`` (0-100; the service's documented pass mark is 70) and ``Result`` (``Success`` or a
``FailedOperation.*`` code). Why this action and not ``DetectAuth``/``GetDetectInfoEnhanced`` (a
flow in Tencent's own H5 page) or ``LivenessCompare`` (compares with a photo we would send):
``docs/identity.md``, "Tencent Cloud FaceID".

``LivenessType`` is ``SILENT``: the service's passive presentation-attack detection on the whole
video. Its ``ACTION`` mode asks for its own action sequence (1 open mouth, 2 close eyes, issued by
``GetActionSequence``), which our challenge's steps (blink, turn left, turn right) cannot express,
and ``LIP`` needs spoken digits and audio. Our challenge's steps are therefore not sent; the capture
they shaped is.

The frames are sent as one Motion-JPEG AVI (one of the video formats the action accepts: mp4, avi,
flv) at ``fps`` frames per second, every frame on one canvas (letterboxed, never stretched). The
request is signed by the SDK (TC3-HMAC-SHA256). An ``AuthFailure.*`` answer is a configuration
error of this deployment, reported as an upstream error and never as a pass; a timeout is a 504.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import struct
import time
import warnings
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from app_api.core.errors import AppError
from identity import errors
from identity.face.image import ImageLimits, ImageProblem, probe_image
from identity.face.liveness import Step
from identity.face.verifier import Reference, VerificationResult, check_frame_count

log = logging.getLogger(__name__)

ACTION = "LivenessRecognition"
API_VERSION = "2018-03-01"
SERVICE = "faceid"
LIVENESS_TYPE = "SILENT"
# VideoBase64: at most 8 MB once base64-encoded (the action's documented limit).
MAX_VIDEO_BASE64 = 8 * 1024 * 1024
# Every frame is put on a canvas whose longer side is at most this.
VIDEO_MAX_SIDE = 960


class RealPersonServiceTimeout(AppError):
    code = "identity.real_person_service_timeout"
    title = "实人认证服务响应超时，请稍后再试"
    status = 504


# FailedOperation codes that are the service's verdict on the capture (a failed check, counted
# against the day's failures) rather than a refusal of the request.
LIVENESS_FAILED = frozenset(
    {
        "FailedOperation.LivessDetectFail",
        "FailedOperation.LivessDetectFake",
        "FailedOperation.LivessUnknownError",
        "FailedOperation.SilentDetectFail",
        "FailedOperation.SilentEyeLiveFail",
        "FailedOperation.SilentMouthLiveFail",
        "FailedOperation.SilentPictureLiveFail",
        "FailedOperation.SilentThreshold",
        "FailedOperation.SilentFaceWithMaskFail",
    }
)
COMPARE_FAILED = frozenset(
    {
        "FailedOperation.CompareLowSimilarity",
        "FailedOperation.LifePhotoDetectFake",
        "FailedOperation.CompareFail",
    }
)
# Refusals of the capture itself: our own bad-input errors.
_INPUT_ERRORS: dict[str, type[AppError]] = {
    "FailedOperation.SilentMultiFaceFail": errors.MultipleFaces,
    "FailedOperation.LifePhotoDetectFaces": errors.MultipleFaces,
    "FailedOperation.SilentFaceDetectFail": errors.NoFace,
    "FailedOperation.LifePhotoDetectNoFaces": errors.NoFace,
    "FailedOperation.ActionNodetectFace": errors.NoFace,
    "FailedOperation.LivessBestFrameError": errors.NoFace,
    "FailedOperation.IncompleteFace": errors.NoFace,
    "FailedOperation.SilentFaceQualityFail": errors.ImageInvalid,
    "FailedOperation.VideoDecodeFailed": errors.ImageInvalid,
    "FailedOperation.LipVideoInvalid": errors.ImageInvalid,
    "FailedOperation.SilentTooShort": errors.TooFewFrames,
    "FailedOperation.VideoDurationExceeded": errors.TooManyFrames,
}
# The registry has no usable record for this number and name.
_NO_RECORD = frozenset(
    {
        "FailedOperation.IdNoExistSystem",
        "FailedOperation.IdNameMisMatch",
        "FailedOperation.IdPhotoNoExist",
        "FailedOperation.IdFormatError",
        "FailedOperation.NameFormatError",
    }
)


def _frame_problem(kind: str, index: int) -> AppError:
    cls: type[AppError] = {
        "image_too_large": errors.ImageTooLarge,
        "image_too_many_pixels": errors.ImageTooManyPixels,
    }.get(kind, errors.ImageInvalid)
    return cls(f"第 {index + 1} 帧：{cls.title}", frame=index)


def pack_video(frames: Sequence[bytes], *, fps: float, limits: ImageLimits) -> bytes:
    """The frames as one Motion-JPEG AVI (RIFF): one canvas size, each frame letterboxed onto it.

    The canvas is the first frame's size (oriented by EXIF, longer side at most VIDEO_MAX_SIDE).
    Raises the ``identity.*`` error of an unreadable or oversized frame, with its index.
    """
    from PIL import Image, ImageOps

    jpegs: list[bytes] = []
    canvas: tuple[int, int] | None = None
    for i, data in enumerate(frames):
        try:
            probe_image(data, limits)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    im.load()
                    rgb = ImageOps.exif_transpose(im).convert("RGB")
        except ImageProblem as e:
            raise _frame_problem(e.kind, i) from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            raise _frame_problem("image_invalid", i) from None
        if canvas is None:
            w, h = rgb.size
            s = min(1.0, VIDEO_MAX_SIDE / max(w, h))
            # Even sides: what video decoders expect of 4:2:0 pictures.
            canvas = (max(2, round(w * s) // 2 * 2), max(2, round(h * s) // 2 * 2))
        fitted = ImageOps.pad(rgb, canvas, method=Image.Resampling.BILINEAR, color=(0, 0, 0))
        buf = io.BytesIO()
        fitted.save(buf, format="JPEG", quality=90)
        jpegs.append(buf.getvalue())
    assert canvas is not None
    return mjpeg_avi(jpegs, width=canvas[0], height=canvas[1], fps=fps)


def _chunk(fourcc: bytes, data: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def _list(kind: bytes, data: bytes) -> bytes:
    return _chunk(b"LIST", kind + data)


def mjpeg_avi(jpegs: Sequence[bytes], *, width: int, height: int, fps: float) -> bytes:
    """A RIFF AVI holding one MJPG video stream of ``jpegs`` at ``fps`` (with an idx1 index)."""
    n = len(jpegs)
    usec = round(1_000_000 / fps)
    biggest = max(len(j) for j in jpegs)
    avih = struct.pack(
        "<10I16x", usec, round(biggest * fps), 0, 0x10, n, 0, 1, biggest, width, height
    )  # AVIF_HASINDEX
    strh = (
        b"vids"
        + b"MJPG"
        + struct.pack(
            "<IHHIIIIIIIIhhhh",
            0,
            0,
            0,
            0,
            1000,
            round(fps * 1000),
            0,
            n,
            biggest,
            0xFFFFFFFF,
            0,
            0,
            0,
            width,
            height,
        )
    )
    strf = struct.pack("<IiiHH4sIiiII", 40, width, height, 1, 24, b"MJPG", width * height * 3, 0, 0, 0, 0)
    hdrl = _list(
        b"hdrl", _chunk(b"avih", avih) + _list(b"strl", _chunk(b"strh", strh) + _chunk(b"strf", strf))
    )
    movi_body = b""
    index = b""
    for j in jpegs:
        # idx1 offsets count from the 'movi' fourcc of the movi list.
        index += b"00dc" + struct.pack("<III", 0x10, 4 + len(movi_body), len(j))  # AVIIF_KEYFRAME
        movi_body += _chunk(b"00dc", j)
    body = b"AVI " + hdrl + _list(b"movi", movi_body) + _chunk(b"idx1", index)
    return b"RIFF" + struct.pack("<I", len(body)) + body


class TencentFaceIDVerifier:
    """``LivenessRecognition`` through ``tencentcloud-sdk-python-faceid`` (its asyncio client)."""

    name = "tencent_faceid"

    def __init__(
        self,
        *,
        url: str,
        secret_id: str,
        secret_key: str,
        region: str = "",
        min_similarity: float = 70.0,
        timeout_s: float = 20.0,
        fps: float = 3.0,
        limits: ImageLimits,
        min_frames: int = 4,
        max_frames: int = 16,
        max_total_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
            raise ValueError(f"Tencent FaceID URL must be scheme://host[:port] without a path: {url!r}")
        self.scheme, self.endpoint = parts.scheme, parts.netloc
        self.secret_id, self.secret_key, self.region = secret_id, secret_key, region
        self.min_similarity, self.timeout_s, self.fps = min_similarity, timeout_s, fps
        self.limits = limits
        self.min_frames, self.max_frames, self.max_total_bytes = min_frames, max_frames, max_total_bytes

    def _client(self) -> Any:
        from tencentcloud.common.credential import Credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.faceid.v20180301.faceid_client_async import FaceidClient

        http = HttpProfile(protocol=self.scheme, endpoint=self.endpoint, reqTimeout=self.timeout_s)
        # No region breaker: it would fail over to another Tencent endpoint than the one configured.
        profile = ClientProfile(httpProfile=http, disable_region_breaker=True)
        return FaceidClient(Credential(self.secret_id, self.secret_key), self.region, profile)

    async def _call(self, video_b64: str, reference: Reference) -> Any:
        from tencentcloud.faceid.v20180301 import models

        req = models.LivenessRecognitionRequest()
        req.IdCard = reference.id_number
        req.Name = reference.name
        req.LivenessType = LIVENESS_TYPE
        req.VideoBase64 = video_b64
        async with self._client() as client:
            # The SDK's own timeout covers each phase of the HTTP exchange; this bounds the whole.
            async with asyncio.timeout(self.timeout_s + 1.0):
                return await client.LivenessRecognition(req)

    async def verify(
        self, *, steps: Sequence[Step], frames: Sequence[bytes], reference: Reference
    ) -> VerificationResult:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        t0 = time.perf_counter()
        check_frame_count(
            frames,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            max_total_bytes=self.max_total_bytes,
        )
        video = await asyncio.to_thread(pack_video, frames, fps=self.fps, limits=self.limits)
        video_b64 = base64.b64encode(video).decode("ascii")
        if len(video_b64) > MAX_VIDEO_BASE64:
            raise errors.ImageTooLarge(
                "画面合成的视频超过 8 MB，请降低分辨率后重试", max_bytes=MAX_VIDEO_BASE64
            )
        figures: dict[str, Any] = {
            "liveness_type": LIVENESS_TYPE,
            "min_similarity": self.min_similarity,
            "video_bytes": len(video),
        }
        try:
            resp = await self._call(video_b64, reference)
        except (TimeoutError, httpx.TimeoutException):
            raise RealPersonServiceTimeout(f"腾讯云人脸核身在 {self.timeout_s:g} 秒内未应答") from None
        except httpx.HTTPError as e:
            raise errors.RealPersonServiceError("腾讯云人脸核身连接失败", reason=type(e).__name__) from None
        except TencentCloudSDKException as e:
            code = str(e.get_code() or "")
            figures["request_id"] = e.get_request_id()
            return self._outcome(code, None, steps, figures, t0, message=str(e.get_message() or ""))
        figures["request_id"] = resp.RequestId
        sim = resp.Sim
        similarity = float(sim) if isinstance(sim, int | float) else None
        return self._outcome(str(resp.Result or ""), similarity, steps, figures, t0, message=resp.Description)

    def _outcome(
        self,
        code: str,
        similarity: float | None,
        steps: Sequence[Step],
        figures: dict[str, Any],
        t0: float,
        *,
        message: str | None,
    ) -> VerificationResult:
        """The service's answer (``Result`` of a 200, or ``Error.Code``) as a result or our error."""
        figures["upstream_result"] = code
        res = VerificationResult(passed=False, verifier=self.name, similarity=similarity, figures=figures)
        if code == "Success":
            res.liveness_passed = True
            if similarity is None or similarity < self.min_similarity:
                res.code, res.detail = errors.FaceMismatch.code, "人脸与身份证照片不一致"
            else:
                res.passed = True
        elif code in COMPARE_FAILED:
            res.liveness_passed = True
            res.code, res.detail = errors.FaceMismatch.code, "人脸与身份证照片不一致"
        elif code in LIVENESS_FAILED:
            res.code, res.detail = errors.LivenessFailed.code, "活体检测未通过"
        elif code in _INPUT_ERRORS:
            cls = _INPUT_ERRORS[code]
            raise cls(f"{cls.title}（{code}）", upstream_code=code)
        elif code in _NO_RECORD:
            raise errors.RealPersonNoRecord(upstream_code=code)
        elif code.startswith("AuthFailure"):
            # Our SecretId/SecretKey or clock is wrong: a deployment problem, never the resident's.
            log.error("Tencent FaceID refused our credentials: %s %s", code, (message or "")[:200])
            raise errors.RealPersonServiceError(
                "实人认证服务拒绝了本平台的调用凭据（配置错误）", upstream_code=code
            )
        else:
            raise errors.RealPersonServiceError(
                "实人认证服务返回错误", upstream_code=code, upstream_message=(message or "")[:200]
            )
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res
