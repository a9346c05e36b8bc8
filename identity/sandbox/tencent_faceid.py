"""Protocol sandbox of Tencent Cloud FaceID's ``LivenessRecognition``, for development and tests.

Built from Tencent's published API (API 3.0, version 2018-03-01), not from its code: the real SDK
(:mod:`identity.face.tencent`) talks to it over HTTP with its endpoint set to this server. What it
checks, as the service does:

- ``POST /`` with ``Content-Type: application/json``, ``X-TC-Action: LivenessRecognition``,
  ``X-TC-Version: 2018-03-01`` and ``X-TC-Timestamp`` within 300 s of now
  (``AuthFailure.SignatureExpire`` otherwise);
- the ``Authorization`` header of TC3-HMAC-SHA256, recomputed here: the canonical request (method,
  ``/``, the query string, the signed headers lower-cased ``key:value`` lines, their names, the
  SHA-256 of the body), the string to sign (algorithm, timestamp, ``date/faceid/tc3_request``, the
  canonical request's SHA-256) and the key chain HMAC("TC3"+SecretKey, date) -> service ->
  "tc3_request". A malformed header is ``AuthFailure.InvalidAuthorization``, an unknown SecretId
  ``AuthFailure.SecretIdNotFound``, a wrong signature ``AuthFailure.SignatureFailure``;
- the action's parameters (``IdCard``, ``Name``, ``LivenessType``, ``VideoBase64`` at most 8 MB);
  errors come back, as every API 3.0 error does, with HTTP 200 and
  ``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}``.

How it decides (a stand-in for the service's models, deterministic and documented in
``docs/identity.md``): the video (a Motion-JPEG AVI, this sandbox's only decoder) must last at
least 2 s (``FailedOperation.SilentTooShort``) and at most 20 s; the frames go through the
project's face engine (no face: ``SilentFaceDetectFail``, several: ``SilentMultiFaceFail``).
"Silent liveness" passes when the frames are one face track (every frame within 0.5 of the first)
with at least one natural blink (eyes closed and reopened, by the landmark rule of
:mod:`identity.face.liveness`); a replayed still has none. Then the most frontal open-eye frame is
compared with the registry's ID photo: ``Sim = 100 - 60 x distance`` (clipped to 0-100), so that
the service's fixed pass mark of 70 is the local tolerance of 0.5. The answer is ``Result`` =
``Success`` or ``FailedOperation.LivessDetectFail`` / ``FailedOperation.CompareLowSimilarity``
with ``Sim`` and ``Description``. ``delay_s`` makes it answer late (a slow upstream).

Serve ``build_app(...)`` on its own port (the SDK calls ``scheme://host[:port]/``):
``python -m identity.sandbox.tencent_faceid --port 8790``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import re
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from identity.face.engine import FaceAnalysis, face_distance
from identity.face.liveness import LivenessConfig, Step, ear, motion_events, yaw
from identity.face.pool import FaceEngine
from identity.face.tencent import ACTION, API_VERSION, MAX_VIDEO_BASE64, SERVICE

# id_number -> (name, ID photo or None) in the registry, or None when there is no such number.
Registry = Callable[[str], Awaitable[tuple[str, bytes | None] | None]]

MAX_SKEW_S = 300
PASS_SIM = 70.0
MIN_SECONDS, MAX_SECONDS = 2.0, 20.0
_AUTH = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<sid>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<svc>[a-z]+)/tc3_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)


class VideoError(ValueError):
    pass


def read_mjpeg_avi(data: bytes) -> tuple[list[bytes], float]:
    """The JPEG frames of an MJPG stream in a RIFF AVI and the stream's frames per second."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"AVI ":
        raise VideoError("not a RIFF AVI")
    frames: list[bytes] = []
    usec = 0

    def walk(start: int, end: int) -> None:
        nonlocal usec
        pos = start
        while pos + 8 <= end:
            fourcc = data[pos : pos + 4]
            (size,) = struct.unpack_from("<I", data, pos + 4)
            body = pos + 8
            if body + size > end:
                raise VideoError("truncated chunk")
            if fourcc == b"LIST":
                walk(body + 4, body + size)
            elif fourcc == b"avih" and size >= 4:
                (usec,) = struct.unpack_from("<I", data, body)
            elif fourcc[2:] in (b"dc", b"db"):
                frames.append(data[body : body + size])
            pos = body + size + (size & 1)

    walk(12, min(len(data), 8 + struct.unpack_from("<I", data, 4)[0]))
    if not frames or usec <= 0:
        raise VideoError("no video frames")
    return frames, 1_000_000 / usec


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    def h(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = h(h(h(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class TencentFaceIDSandbox:
    def __init__(
        self,
        *,
        credentials: dict[str, str],
        registry: Registry,
        engine: Callable[[], FaceEngine],
        liveness: LivenessConfig | None = None,
        frame_tolerance: float = 0.5,
    ) -> None:
        self.credentials = credentials  # SecretId -> SecretKey
        self.registry = registry
        self.engine = engine
        self.liveness = liveness or LivenessConfig()
        self.frame_tolerance = frame_tolerance
        self.delay_s = 0.0
        self.requests = 0
        self.answers: list[dict[str, Any]] = []  # the last 100 answers, newest last (no images)

    def _answer(self, response: dict[str, Any]) -> JSONResponse:
        response["RequestId"] = str(uuid.uuid4())
        self.answers.append({k: v for k, v in response.items() if k != "BestFrameBase64"})
        del self.answers[:-100]
        return JSONResponse({"Response": response})

    def _error(self, code: str, message: str) -> JSONResponse:
        return self._answer({"Error": {"Code": code, "Message": message}})

    def _check_signature(self, request: Request, body: bytes) -> JSONResponse | None:
        h = request.headers
        m = _AUTH.fullmatch(h.get("authorization", ""))
        if m is None or m["svc"] != SERVICE:
            return self._error("AuthFailure.InvalidAuthorization", "Authorization 不符合腾讯云标准")
        try:
            ts = int(h.get("x-tc-timestamp", ""))
        except ValueError:
            return self._error("AuthFailure.InvalidAuthorization", "X-TC-Timestamp 无效")
        if abs(time.time() - ts) > MAX_SKEW_S:
            return self._error("AuthFailure.SignatureExpire", "签名过期")
        if datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d") != m["date"]:
            return self._error("AuthFailure.InvalidAuthorization", "Credential 日期与时间戳不符")
        secret_key = self.credentials.get(m["sid"])
        if secret_key is None:
            return self._error("AuthFailure.SecretIdNotFound", "密钥不存在")
        signed = m["signed"].split(";")
        if signed != sorted(signed) or not {"content-type", "host"} <= set(signed):
            return self._error("AuthFailure.InvalidAuthorization", "SignedHeaders 无效")
        canonical_headers = "".join(f"{k}:{h.get(k, '').strip().lower()}\n" for k in signed)
        canonical = "\n".join(
            [
                request.method,
                "/",
                request.url.query,
                canonical_headers,
                m["signed"],
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{m['date']}/{SERVICE}/tc3_request"
        to_sign = "\n".join(
            ["TC3-HMAC-SHA256", str(ts), scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        if not hmac.compare_digest(tc3_signature(secret_key, m["date"], SERVICE, to_sign), m["sig"]):
            return self._error("AuthFailure.SignatureFailure", "签名错误")
        return None

    async def handle(self, request: Request) -> JSONResponse:
        self.requests += 1
        body = await request.body()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        h = request.headers
        refused = self._check_signature(request, body)
        if refused is not None:
            return refused
        if h.get("x-tc-action") != ACTION:
            return self._error("InvalidAction", f"接口不存在：{h.get('x-tc-action')}")
        if h.get("x-tc-version") != API_VERSION:
            return self._error("NoSuchVersion", "接口版本不存在")
        if h.get("content-type") != "application/json":
            return self._error("InvalidParameter", "Content-Type 应为 application/json")
        try:
            params = json.loads(body)
            id_card, name = str(params["IdCard"]), str(params["Name"])
            liveness_type = str(params["LivenessType"])
            video_b64 = str(params.get("VideoBase64") or "")
        except (ValueError, KeyError, TypeError):
            return self._error("InvalidParameter", "参数错误")
        if liveness_type not in {"LIP", "ACTION", "SILENT"}:
            return self._error("InvalidParameterValue", "LivenessType 取值错误")
        if liveness_type != "SILENT":
            # Digit and action modes need GetLiveCode / GetActionSequence: not in this sandbox.
            return self._error("UnsupportedOperation", "沙箱仅支持静默模式（SILENT）")
        if not video_b64:
            return self._error("InvalidParameter", "VideoBase64 与 VideoUrl 必须提供一个")
        if len(video_b64) > MAX_VIDEO_BASE64:
            return self._error("FailedOperation.LipSizeError", "视频大小不合适")
        if not re.fullmatch(r"\d{17}[\dX]", id_card):
            return self._error("FailedOperation.IdFormatError", "输入的身份证号有误")
        try:
            frames, fps = read_mjpeg_avi(base64.b64decode(video_b64, validate=True))
        except (VideoError, binascii.Error, struct.error):
            return self._error("FailedOperation.VideoDecodeFailed", "视频解码异常")
        seconds = len(frames) / fps
        if seconds < MIN_SECONDS:
            return self._error("FailedOperation.SilentTooShort", "视频录制时间过短，请录制2秒以上的视频")
        if seconds > MAX_SECONDS:
            return self._error("FailedOperation.VideoDurationExceeded", "视频时长过长")
        record = await self.registry(id_card)
        if record is None:
            return self._error("FailedOperation.IdNoExistSystem", "库中无此号，请到户籍所在地进行核实")
        if record[0] != name:
            return self._error("FailedOperation.IdNameMisMatch", "姓名和身份证号不一致，请核实后重试")
        if record[1] is None:
            return self._error("FailedOperation.IdPhotoNoExist", "库中无此号照片，请到户籍所在地进行核实")
        engine = self.engine()
        analyses = await engine.analyse_many(frames)
        for a in analyses:
            if a.problem == "multiple_faces":
                return self._error("FailedOperation.SilentMultiFaceFail", "视频检测中有多个人脸")
            if a.problem is not None:
                return self._error("FailedOperation.SilentFaceDetectFail", "视频未检测到人脸")
        photo = await engine.analyse(record[1])
        if not photo.ok:
            return self._error("FailedOperation.IdPhotoPoorQuality", "证件图片质量差")
        return self._judge(analyses, photo)

    def _judge(self, analyses: list[FaceAnalysis], photo: FaceAnalysis) -> JSONResponse:
        track = all(face_distance(analyses[0].encoding, a.encoding) <= self.frame_tolerance for a in analyses)
        ears = [ear(a.points) for a in analyses]
        yaws = [yaw(a.points) for a in analyses]
        neutral = sorted(yaws)[len(yaws) // 2]
        cfg = self.liveness
        frontal = [i for i, y in enumerate(yaws) if abs(y - neutral) < cfg.turn_threshold / 2]
        open_ears = sorted(ears[i] for i in frontal or range(len(ears)))
        baseline = open_ears[min(len(open_ears) - 1, (3 * len(open_ears)) // 4)]
        blinked = any(e is Step.BLINK for e, _i in motion_events(ears, yaws, baseline, neutral, cfg))
        if not (track and blinked):
            return self._answer(
                {"Result": "FailedOperation.LivessDetectFail", "Description": "活体检测没通过", "Sim": 0.0}
            )
        candidates = frontal or list(range(len(analyses)))
        best = max(
            candidates, key=lambda i: (ears[i] >= cfg.blink_open_ratio * baseline, -abs(yaws[i] - neutral))
        )
        distance = face_distance(analyses[best].encoding, photo.encoding)
        sim = round(min(100.0, max(0.0, 100.0 - 60.0 * distance)), 2)
        if sim < PASS_SIM:
            return self._answer(
                {
                    "Result": "FailedOperation.CompareLowSimilarity",
                    "Description": "比对相似度未达到通过标准",
                    "Sim": sim,
                }
            )
        return self._answer({"Result": "Success", "Description": "成功", "Sim": sim, "BestFrameBase64": ""})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/", self.handle, methods=["POST"])])


def build_app() -> Starlette:
    """The development sandbox: the configured SecretId/SecretKey, over the local data center."""
    from identity.config import get_identity_settings
    from identity.face.pool import get_face_engine

    s = get_identity_settings()

    async def registry(id_number: str) -> tuple[str, bytes | None] | None:
        from app_api.core.db import sessionmaker
        from app_api.platform.datahub.service import LocalDatahub

        async with sessionmaker()() as session:
            rec = await LocalDatahub().person(session, id_number)
        return None if rec is None else (rec.name, rec.photo)

    sandbox = TencentFaceIDSandbox(
        credentials={s.tencent_faceid_secret_id: s.tencent_faceid_secret_key.get_secret_value()},
        registry=registry,
        engine=get_face_engine,
    )
    return sandbox.app()


if __name__ == "__main__":  # pragma: no cover - a development tool
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Tencent FaceID LivenessRecognition sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    args = parser.parse_args()
    uvicorn.run(build_app(), host=args.host, port=args.port)
