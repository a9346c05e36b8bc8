"""Protocol sandbox of a licensed real-person service (实人认证), for development and tests.

It is the reference implementation of this project's proposed protocol, which
:mod:`identity.face.remote` and ``docs/adapters/realperson.yaml`` document (not the CTID platform's
or a vendor's): it checks the app id, the request signature, the timestamp window and single use of
each nonce, then does what such a service does — liveness and a comparison with the authoritative
photo — with the local face engine, and signs its answer. The authoritative photo comes from
``registry`` (in development: the population records of the local data center). Similarity is
reported as ``100 x (1 - distance)``.

Mount ``build_router(...)`` at ``/sandbox/realperson`` in development, or serve ``build_app(...)``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from app_api.core.errors import AppError
from app_api.core.signing import MAX_SKEW_S, sign_response, verify_request
from app_api.platform.access import public
from identity import errors
from identity.face.liveness import Step
from identity.face.remote import VERIFY_PATH
from identity.face.verifier import LocalFaceVerifier, Reference

# (id_number, name) -> the authoritative photo, or None when there is no such person.
Registry = Callable[[str, str], Awaitable[bytes | None]]

_PROBLEM_OF: dict[type[AppError], str] = {
    errors.ImageInvalid: "image_invalid",
    errors.ImageTooLarge: "image_too_large",
    errors.ImageTooManyPixels: "image_too_many_pixels",
    errors.NoFace: "no_face",
    errors.MultipleFaces: "multiple_faces",
}


class RealPersonSandbox:
    def __init__(
        self, *, app_id: str, secret: str, registry: Registry, verifier: Callable[[], LocalFaceVerifier]
    ) -> None:
        self.app_id, self.secret = app_id, secret
        self.registry = registry
        self.verifier = verifier
        self.seen_nonces: dict[str, float] = {}
        self.requests = 0

    def _answer(self, request: Request, payload: dict[str, Any], status: int = 200) -> Response:
        body = json.dumps(payload, ensure_ascii=False).encode()
        h = request.headers
        sig = sign_response(self.secret, h.get("x-timestamp", ""), h.get("x-nonce", ""), body)
        return Response(body, status_code=status, media_type="application/json", headers={"x-signature": sig})

    async def verify(self, request: Request) -> Response:
        self.requests += 1
        body = await request.body()
        h = request.headers
        bad = verify_request(h, secret=self.secret, method="POST", path=VERIFY_PATH, body=body)
        if h.get("x-app-id") != self.app_id or bad == "bad_signature":
            return self._answer(request, {"code": "1001", "message": "signature invalid"}, 401)
        if bad == "stale_timestamp":
            return self._answer(request, {"code": "1002", "message": "timestamp out of window"}, 401)
        now, nonce = time.time(), h.get("x-nonce", "")
        self.seen_nonces = {n: t for n, t in self.seen_nonces.items() if now - t < 2 * MAX_SKEW_S}
        if nonce in self.seen_nonces or len(nonce) < 16:
            return self._answer(request, {"code": "1003", "message": "nonce reused"}, 401)
        self.seen_nonces[nonce] = now
        try:
            # The body was read above (for the signature); Starlette parses the form from it.
            form = await request.form(max_files=64, max_part_size=8 * 1024 * 1024)
            p = json.loads(str(form["meta"]))
            biz_no, name, id_number = str(p["biz_no"]), str(p["name"]), str(p["id_number"])
            steps = [Step(a) for a in p["actions"]]
            frames = []
            for part in form.getlist("frames"):
                if isinstance(part, str):
                    raise TypeError("frame is not a file part")
                frames.append(await part.read())
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._answer(request, {"code": "2001", "message": "bad request"}, 400)
        photo = await self.registry(id_number, name)
        if photo is None:
            return self._answer(request, {"code": "3001", "message": "no such person", "biz_no": biz_no})
        try:
            res = await self.verifier().verify(
                steps=steps, frames=frames, reference=Reference(id_number=id_number, name=name, photo=photo)
            )
        except (errors.TooManyFrames, errors.TooFewFrames):
            return self._answer(request, {"code": "2001", "message": "frame count", "biz_no": biz_no}, 400)
        except AppError as e:
            problem = _PROBLEM_OF.get(type(e))
            if problem is None:
                return self._answer(request, {"code": "5000", "message": e.code, "biz_no": biz_no}, 500)
            return self._answer(
                request,
                {
                    "code": "2002",
                    "message": problem,
                    "biz_no": biz_no,
                    "face_problem": problem,
                    "frame": e.extra.get("frame", 0),
                },
            )
        similarity = None if res.distance is None else round(max(0.0, 100.0 * (1.0 - res.distance)), 2)
        same_person = res.code != errors.FramesNotSamePerson.code
        return self._answer(
            request,
            {
                "code": "0",
                "message": "ok",
                "biz_no": biz_no,
                "result": {
                    "liveness": "pass" if res.liveness_passed and same_person else "fail",
                    "failed_action": res.failed_step,
                    "similarity": similarity,
                },
            },
        )

    def router(self) -> APIRouter:
        r = APIRouter(tags=["sandbox"], include_in_schema=False)
        # The sandbox authenticates callers by signature, as the protocol requires.
        r.add_api_route(VERIFY_PATH, self.verify, methods=["POST"], dependencies=[Depends(public)])
        return r

    def app(self) -> FastAPI:
        a = FastAPI(openapi_url=None, docs_url=None)
        a.include_router(self.router())
        return a


async def population_registry(id_number: str, name: str) -> bytes | None:
    """Development registry: the ID photo from the local data center's population records."""
    from app_api.core.db import sessionmaker
    from app_api.platform.datahub.service import LocalDatahub

    async with sessionmaker()() as s:
        rec = await LocalDatahub().person(s, id_number)
    if rec is None or rec.name != name:
        return None
    return rec.photo


def build_router() -> APIRouter:
    """The development sandbox on the configured app id and secret, over the local records."""
    from identity.config import get_identity_settings
    from identity.face.factory import local_verifier

    s = get_identity_settings()
    sandbox = RealPersonSandbox(
        app_id=s.real_person_app_id,
        secret=s.real_person_secret.get_secret_value(),
        registry=population_registry,
        verifier=local_verifier,
    )
    return sandbox.router()
