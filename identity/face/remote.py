"""Adapter for a licensed remote real-person service (实人认证).

Such a service holds (or reaches) the authoritative ID photo itself: we send the name, the ID
number, the challenge asked and the frames; it checks liveness and compares, and answers with a
similarity score (0-100). The protocol is this project's proposal, not the CTID platform's or a
cloud vendor's (their APIs differ; ``docs/adapters/realperson.yaml`` and the README beside it say
how an integrator maps it). As this adapter and its sandbox (:mod:`identity.sandbox.realperson`,
development only) speak it:

``POST {base}/v1/liveness/verify`` as multipart/form-data: a ``meta`` field holding JSON
``{"biz_no", "name", "id_number", "actions": ["blink", "turn_left", ...]}`` and the frames, in
order, as ``frames`` file parts (raw bytes: no base64 inflation). The request is signed as every
house protocol is (:mod:`app_api.core.signing`: ``x-app-id``, ``x-timestamp`` within 300 s, a
single-use ``x-nonce``, ``x-signature`` over method, path, timestamp, nonce and the SHA-256 of the
whole multipart body, boundary included).

The answer ``{"code": "0", "message", "biz_no", "result": {"liveness": "pass"|"fail",
"failed_action", "similarity"}}`` carries the response signature of the same convention (over the
request's timestamp and nonce and the answer's body), which binds the answer to our request: an
answer that fails it is not believed. Error codes: ``1001`` bad signature or unknown app id,
``1002`` stale timestamp, ``1003`` nonce reused, ``2001`` bad request, ``2002`` unusable frame
(``face_problem``: ``image_invalid`` | ``no_face`` | ``multiple_faces``, ``frame``), ``3001`` no such
person.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

import httpx

from app_api.core.errors import AppError
from app_api.core.http import tls_context
from app_api.core.signing import SignedRequest, signed_headers, verify_response
from identity import errors
from identity.face.liveness import Step
from identity.face.verifier import Reference, VerificationResult, check_frame_count

VERIFY_PATH = "/v1/liveness/verify"

_FACE_PROBLEMS: dict[str, type[AppError]] = {
    "image_invalid": errors.ImageInvalid,
    "image_too_large": errors.ImageTooLarge,
    "image_too_many_pixels": errors.ImageTooManyPixels,
    "no_face": errors.NoFace,
    "multiple_faces": errors.MultipleFaces,
}


class RemoteRealPersonVerifier:
    name = "remote"

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        secret: str,
        min_similarity: float,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 15.0,
        min_frames: int = 4,
        max_frames: int = 16,
        max_total_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id, self.secret, self.min_similarity = app_id, secret, min_similarity
        self.client = client
        self.timeout_s = timeout_s
        self.min_frames, self.max_frames, self.max_total_bytes = min_frames, max_frames, max_total_bytes

    async def _post(
        self, meta: dict[str, Any], frames: Sequence[bytes]
    ) -> tuple[httpx.Response, SignedRequest]:
        url = self.base_url + VERIFY_PATH
        client = self.client or httpx.AsyncClient(timeout=self.timeout_s, verify=tls_context())
        try:
            # Build first, sign the exact multipart bytes (boundary included), then send them.
            req = client.build_request(
                "POST",
                url,
                data={"meta": json.dumps(meta, ensure_ascii=False)},
                files=[
                    ("frames", (f"{i:02d}.img", f, "application/octet-stream")) for i, f in enumerate(frames)
                ],
                timeout=self.timeout_s,
            )
            signed = signed_headers(
                app_id=self.app_id, secret=self.secret, method="POST", path=VERIFY_PATH, body=req.read()
            )
            req.headers.update(signed.headers)
            return await client.send(req), signed
        finally:
            if self.client is None:
                await client.aclose()

    async def verify(
        self, *, steps: Sequence[Step], frames: Sequence[bytes], reference: Reference
    ) -> VerificationResult:
        t0 = time.perf_counter()
        check_frame_count(
            frames,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            max_total_bytes=self.max_total_bytes,
        )
        biz_no = secrets.token_hex(16)
        meta = {
            "biz_no": biz_no,
            "name": reference.name,
            "id_number": reference.id_number,
            "actions": [s.value for s in steps],
        }
        try:
            resp, signed = await self._post(meta, frames)
        except httpx.HTTPError as e:
            raise errors.RealPersonServiceError("实人认证服务连接失败") from e
        if not verify_response(resp.headers, secret=self.secret, request=signed, body=resp.content):
            raise errors.RealPersonServiceError("实人认证服务应答签名无效", upstream_status=resp.status_code)
        try:
            data: dict[str, Any] = json.loads(resp.content)
        except ValueError:
            raise errors.RealPersonServiceError("实人认证服务应答无法解析") from None
        code = str(data.get("code"))
        if code == "2002":
            problem = str(data.get("face_problem"))
            frame = int(data.get("frame", 0))
            cls = _FACE_PROBLEMS.get(problem, errors.ImageInvalid)
            raise cls(f"第 {frame + 1} 帧：{cls.title}", frame=frame)
        if code == "3001":
            raise errors.RealPersonNoRecord()
        if code != "0" or data.get("biz_no") != biz_no:
            raise errors.RealPersonServiceError(
                "实人认证服务返回错误",
                upstream_code=code,
                upstream_message=str(data.get("message", ""))[:200],
            )
        result = data.get("result") or {}
        live = result.get("liveness") == "pass"
        sim = result.get("similarity")
        similarity = float(sim) if isinstance(sim, int | float) else None
        res = VerificationResult(
            passed=False,
            verifier=self.name,
            similarity=similarity,
            liveness_passed=live,
            failed_step=result.get("failed_action"),
            figures={"biz_no": biz_no, "min_similarity": self.min_similarity},
        )
        if not live:
            res.code, res.detail = errors.LivenessFailed.code, "活体检测未通过"
        elif similarity is None or similarity < self.min_similarity:
            res.code, res.detail = errors.FaceMismatch.code, "人脸与登记照片不一致"
        else:
            res.passed = True
        res.elapsed_ms = (time.perf_counter() - t0) * 1e3
        return res
