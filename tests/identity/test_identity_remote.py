"""The remote real-person adapter against its protocol sandbox over loopback HTTP.

The sandbox runs in a uvicorn thread with its own face engine (a separate process pool), judging
with the authoritative photo of its registry, as the licensed service would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from identity_helpers import LIMITS, LoopbackServer, face_bytes

from app_api.core.signing import signed_headers
from identity import errors
from identity.face.liveness import Step
from identity.face.pool import FaceEngine
from identity.face.remote import VERIFY_PATH, RemoteRealPersonVerifier
from identity.face.verifier import LocalFaceVerifier, Reference
from identity.sandbox.realperson import RealPersonSandbox

B, L, R = Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT
SECRET = "test-real-person-secret"
OBAMA_ID, OBAMA_NAME = "110101196108047890", "奥巴马"


@pytest.fixture(scope="module")
def sandbox(faces_dir: object) -> Iterator[tuple[RealPersonSandbox, LoopbackServer]]:
    registry = {OBAMA_ID: (OBAMA_NAME, face_bytes("obama_3.jpg"))}

    async def lookup(id_number: str, name: str) -> bytes | None:
        entry = registry.get(id_number)
        return entry[1] if entry and entry[0] == name else None

    # The sandbox's own engine lives on the server thread's event loop: created lazily there.
    holder: dict[str, LocalFaceVerifier] = {}

    def verifier() -> LocalFaceVerifier:
        if "v" not in holder:
            holder["v"] = LocalFaceVerifier(FaceEngine(limits=LIMITS, workers=1, timeout_s=60))
        return holder["v"]

    sb = RealPersonSandbox(app_id="wojia-test", secret=SECRET, registry=lookup, verifier=verifier)
    server = LoopbackServer(sb.app()).start()
    yield sb, server
    server.stop()
    if "v" in holder:
        holder["v"].engine._executor().shutdown(wait=True, cancel_futures=True)


def remote(server: LoopbackServer, secret: str = SECRET) -> RemoteRealPersonVerifier:
    return RemoteRealPersonVerifier(
        base_url=server.url, app_id="wojia-test", secret=secret, min_similarity=50.0, timeout_s=60
    )


@pytest.fixture(scope="module")
def seq(closed_eyes_obama: bytes) -> list[bytes]:
    front = face_bytes("obama_1.jpg")
    return [
        front,
        closed_eyes_obama,
        front,
        face_bytes("obama_4.jpg"),
        front,
        face_bytes("obama_2.jpg"),
        front,
    ]


async def test_remote_service_passes_the_right_person(sandbox, seq) -> None:
    _sb, server = sandbox
    res = await remote(server).verify(
        steps=[B, L, R], frames=seq, reference=Reference(id_number=OBAMA_ID, name=OBAMA_NAME)
    )
    assert res.passed, (res.code, res.similarity)
    assert res.verifier == "remote"
    assert res.similarity is not None and res.similarity >= 50
    assert res.template is None  # a remote service gives no template to keep


async def test_remote_service_fails_a_replayed_still(sandbox, seq) -> None:
    _sb, server = sandbox
    res = await remote(server).verify(
        steps=[B, L, R], frames=[seq[0]] * 6, reference=Reference(id_number=OBAMA_ID, name=OBAMA_NAME)
    )
    assert not res.passed
    assert res.code == "identity.liveness_failed" and res.failed_step == "blink"


async def test_unknown_person_and_bad_frames_map_to_our_errors(sandbox, seq) -> None:
    _sb, server = sandbox
    with pytest.raises(errors.RealPersonNoRecord):
        await remote(server).verify(
            steps=[B], frames=seq[:4], reference=Reference(id_number=OBAMA_ID, name="拜登")
        )
    bad = list(seq)
    bad[2] = face_bytes("two_faces_obama_biden.jpg")
    with pytest.raises(errors.MultipleFaces) as e:
        await remote(server).verify(steps=[B, L, R], frames=bad, reference=Reference(OBAMA_ID, OBAMA_NAME))
    assert e.value.extra["frame"] == 2


async def test_wrong_secret_is_refused_and_the_answer_not_believed(sandbox, seq) -> None:
    sb, server = sandbox
    before = sb.requests
    with pytest.raises(errors.RealPersonServiceError):
        await remote(server, secret="not-the-secret").verify(
            steps=[B], frames=seq[:4], reference=Reference(OBAMA_ID, OBAMA_NAME)
        )
    assert sb.requests == before + 1


async def test_sandbox_refuses_replayed_nonce_and_stale_timestamp(sandbox) -> None:
    _sb, server = sandbox
    meta = {"biz_no": "x", "name": OBAMA_NAME, "id_number": OBAMA_ID, "actions": ["blink"]}
    req = httpx.Request(
        "POST", server.url + VERIFY_PATH, data={"meta": json.dumps(meta)}, files=[("frames", ("0.jpg", b"x"))]
    )
    body = req.read()

    async def post(signed: dict[str, str], app_id: str = "wojia-test") -> httpx.Response:
        headers = {**signed, "x-app-id": app_id, "content-type": req.headers["content-type"]}
        async with httpx.AsyncClient() as c:
            return await c.post(server.url + VERIFY_PATH, content=body, headers=headers)

    def sign(now: float | None = None, secret: str = SECRET) -> dict[str, str]:
        return signed_headers(
            app_id="wojia-test", secret=secret, method="POST", path=VERIFY_PATH, body=body, now=now
        ).headers

    stale = await post(sign(now=time.time() - 3600))
    assert stale.status_code == 401 and stale.json()["code"] == "1002"
    forged = await post(sign(secret="not-the-secret"))
    assert forged.status_code == 401 and forged.json()["code"] == "1001"
    foreign = await post(sign(), app_id="someone-else")
    assert foreign.status_code == 401 and foreign.json()["code"] == "1001"
    fresh = sign()
    first = await post(fresh)
    assert first.json()["code"] == "2001"  # got past authentication: one frame is too few
    again = await post(fresh)
    assert again.status_code == 401 and again.json()["code"] == "1003"


async def test_unreachable_service_is_an_upstream_error() -> None:
    v = RemoteRealPersonVerifier(base_url="http://127.0.0.1:9", app_id="x", secret="y", min_similarity=50)
    with pytest.raises(errors.RealPersonServiceError):
        await v.verify(steps=[B], frames=[b"a"] * 4, reference=Reference(OBAMA_ID, OBAMA_NAME))
    await asyncio.sleep(0)
