"""Tencent Cloud FaceID: the real SDK (tencentcloud-sdk-python-faceid) against the protocol sandbox
over loopback HTTP, directly and through the identity API.

The sandbox runs in a uvicorn thread with its own face engine (a separate process pool) and a
registry of ID photos from tests/fixtures/faces; it recomputes every TC3-HMAC-SHA256 signature.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from identity_api_helpers import (
    account_id,
    attempts,
    challenge,
    consented,
    me,
    problem,
    real_name,
    upload,
)
from identity_helpers import LIMITS, LoopbackServer, challenge_frames, face_bytes
from sqlmodel import select

from identity import errors
from identity.config import IdentitySettings, get_identity_settings
from identity.face.factory import get_verifier, may_grant_l3
from identity.face.liveness import Step
from identity.face.pool import FaceEngine
from identity.face.tencent import RealPersonServiceTimeout, TencentFaceIDVerifier, pack_video
from identity.face.verifier import Reference
from identity.models import IdentityFaceProfile
from identity.sandbox.tencent_faceid import TencentFaceIDSandbox, read_mjpeg_avi, tc3_signature

B, L, R = Step.BLINK, Step.TURN_LEFT, Step.TURN_RIGHT
SECRET_ID, SECRET_KEY = "AKIDwojiatest", "tencent-test-secret-key"
OBAMA_ID, OBAMA_NAME = "110101196108047890", "奥巴马"
BIDEN_ID, BIDEN_NAME = "110101194211207893", "拜登"


@pytest.fixture(scope="module")
def sandbox(faces_dir: object) -> Iterator[tuple[TencentFaceIDSandbox, LoopbackServer, dict[str, Any]]]:
    registry: dict[str, tuple[str, bytes | None]] = {
        OBAMA_ID: (OBAMA_NAME, face_bytes("obama_3.jpg")),
        BIDEN_ID: (BIDEN_NAME, face_bytes("biden_1.jpg")),
    }

    async def lookup(id_number: str) -> tuple[str, bytes | None] | None:
        return registry.get(id_number)

    holder: dict[str, FaceEngine] = {}

    def engine() -> FaceEngine:
        # Created on the server thread's event loop, on first use.
        if "e" not in holder:
            holder["e"] = FaceEngine(limits=LIMITS, workers=1, timeout_s=60)
        return holder["e"]

    sb = TencentFaceIDSandbox(credentials={SECRET_ID: SECRET_KEY}, registry=lookup, engine=engine)
    server = LoopbackServer(sb.app()).start()
    yield sb, server, registry
    server.stop()
    if "e" in holder:
        holder["e"]._executor().shutdown(wait=True, cancel_futures=True)


def tencent(
    server: LoopbackServer, *, secret_key: str = SECRET_KEY, timeout_s: float = 60
) -> TencentFaceIDVerifier:
    return TencentFaceIDVerifier(
        url=server.url,
        secret_id=SECRET_ID,
        secret_key=secret_key,
        timeout_s=timeout_s,
        fps=3.0,
        limits=LIMITS,
    )


@pytest.fixture(scope="module")
def seq(closed_eyes_obama: bytes) -> list[bytes]:
    """A capture of blink, turn left, turn right from real photos of one person (7 frames, 2.3 s at 3 fps)."""
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


def test_frames_travel_as_one_mjpeg_avi(seq) -> None:
    video = pack_video(seq, fps=3.0, limits=LIMITS)
    frames, fps = read_mjpeg_avi(video)
    assert len(frames) == len(seq) and abs(fps - 3.0) < 0.01
    import io

    from PIL import Image

    sizes = {Image.open(io.BytesIO(f)).size for f in frames}
    assert len(sizes) == 1  # one canvas: obama_1, _2, _4 differ in size and are letterboxed
    with pytest.raises(errors.ImageInvalid) as e:
        pack_video([seq[0], b"not an image", seq[0]], fps=3.0, limits=LIMITS)
    assert e.value.extra["frame"] == 1


async def test_success_through_the_sdk(sandbox, seq) -> None:
    sb, server, _ = sandbox
    res = await tencent(server).verify(steps=[B, L, R], frames=seq, reference=Reference(OBAMA_ID, OBAMA_NAME))
    assert res.passed, (res.code, res.similarity, sb.answers[-1])
    assert res.verifier == "tencent_faceid" and res.liveness_passed
    assert res.similarity is not None and res.similarity >= 70
    assert res.figures["upstream_result"] == "Success" and res.figures["request_id"]
    assert res.template is None


async def test_mismatch_another_persons_id_photo(sandbox, seq) -> None:
    """Obama's capture under Biden's number and name: the registry photo is Biden's."""
    _sb, server, _ = sandbox
    res = await tencent(server).verify(steps=[B, L, R], frames=seq, reference=Reference(BIDEN_ID, BIDEN_NAME))
    assert not res.passed
    assert res.code == "identity.face_mismatch" and res.liveness_passed
    assert res.similarity is not None and res.similarity < 70
    assert res.figures["upstream_result"] == "FailedOperation.CompareLowSimilarity"


async def test_liveness_failure_replayed_still(sandbox, seq) -> None:
    _sb, server, _ = sandbox
    res = await tencent(server).verify(
        steps=[B, L, R], frames=[seq[0]] * 7, reference=Reference(OBAMA_ID, OBAMA_NAME)
    )
    assert not res.passed and not res.liveness_passed
    assert res.code == "identity.liveness_failed"
    assert res.figures["upstream_result"] == "FailedOperation.LivessDetectFail"


async def test_refusals_map_to_our_errors(sandbox, seq) -> None:
    _sb, server, _ = sandbox
    v = tencent(server)
    with pytest.raises(errors.RealPersonNoRecord) as e:
        await v.verify(steps=[B], frames=seq, reference=Reference(OBAMA_ID, BIDEN_NAME))
    assert e.value.extra["upstream_code"] == "FailedOperation.IdNameMisMatch"
    with pytest.raises(errors.TooFewFrames):  # 4 frames at 3 fps: 1.3 s, under the service's 2 s
        await v.verify(steps=[B], frames=seq[:4], reference=Reference(OBAMA_ID, OBAMA_NAME))
    two = list(seq)
    two[2] = face_bytes("two_faces_obama_biden.jpg")
    with pytest.raises(errors.MultipleFaces):
        await v.verify(steps=[B, L, R], frames=two, reference=Reference(OBAMA_ID, OBAMA_NAME))


async def test_bad_signature_is_a_configuration_error_not_a_pass(sandbox, seq) -> None:
    sb, server, _ = sandbox
    before = sb.requests
    with pytest.raises(errors.RealPersonServiceError) as e:
        await tencent(server, secret_key="not-the-key").verify(
            steps=[B, L, R], frames=seq, reference=Reference(OBAMA_ID, OBAMA_NAME)
        )
    assert e.value.status == 502 and e.value.extra["upstream_code"] == "AuthFailure.SignatureFailure"
    assert sb.requests == before + 1
    assert sb.answers[-1]["Error"]["Code"] == "AuthFailure.SignatureFailure"


async def test_sandbox_checks_tc3_signing(sandbox) -> None:
    """Requests signed by hand: the right one gets past authentication; a tampered body, a stale
    timestamp, an unknown SecretId and a malformed header do not."""
    _sb, server, _ = sandbox
    host = server.url.removeprefix("http://")

    def signed(
        body: bytes, *, ts: int | None = None, sid: str = SECRET_ID, key: str = SECRET_KEY
    ) -> dict[str, str]:
        ts = int(time.time()) if ts is None else ts
        date = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                f"content-type:application/json\nhost:{host}\n",
                "content-type;host",
                hashlib.sha256(body).hexdigest(),
            ]
        )
        to_sign = "\n".join(
            [
                "TC3-HMAC-SHA256",
                str(ts),
                f"{date}/faceid/tc3_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        sig = tc3_signature(key, date, "faceid", to_sign)
        return {
            "Content-Type": "application/json",
            "Host": host,
            "X-TC-Action": "LivenessRecognition",
            "X-TC-Version": "2018-03-01",
            "X-TC-Timestamp": str(ts),
            "Authorization": f"TC3-HMAC-SHA256 Credential={sid}/{date}/faceid/tc3_request, "
            f"SignedHeaders=content-type;host, Signature={sig}",
        }

    body = json.dumps(
        {"IdCard": OBAMA_ID, "Name": OBAMA_NAME, "LivenessType": "SILENT", "VideoBase64": "AAAA"}
    ).encode()

    async def post(headers: dict[str, str], content: bytes = body) -> dict[str, Any]:
        async with httpx.AsyncClient() as c:
            r = await c.post(server.url + "/", content=content, headers=headers)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        return r.json()["Response"]

    ok = await post(signed(body))
    assert ok["Error"]["Code"] == "FailedOperation.VideoDecodeFailed"  # authenticated; "AAAA" is no video
    tampered = body.replace(OBAMA_ID.encode(), BIDEN_ID.encode())
    assert (await post(signed(body), tampered))["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert (await post(signed(body, key="x")))["Error"]["Code"] == "AuthFailure.SignatureFailure"
    assert (await post(signed(body, ts=int(time.time()) - 3600)))["Error"][
        "Code"
    ] == "AuthFailure.SignatureExpire"
    assert (await post(signed(body, sid="AKIDother")))["Error"]["Code"] == "AuthFailure.SecretIdNotFound"
    bad = {**signed(body), "Authorization": "Bearer x"}
    assert (await post(bad))["Error"]["Code"] == "AuthFailure.InvalidAuthorization"
    sig = signed(body)
    assert (await post({**sig, "X-TC-Action": "DetectAuth"}))["Error"]["Code"] == "InvalidAction"


async def test_timeout_is_a_clear_504(sandbox, seq) -> None:
    sb, server, _ = sandbox
    sb.delay_s = 6.0
    try:
        t0 = time.perf_counter()
        with pytest.raises(RealPersonServiceTimeout) as e:
            await tencent(server, timeout_s=1.0).verify(
                steps=[B, L, R], frames=seq, reference=Reference(OBAMA_ID, OBAMA_NAME)
            )
        # The SDK's 1 s read timeout, well before the sandbox's answer at 6 s.
        assert time.perf_counter() - t0 < 5.0
    finally:
        sb.delay_s = 0.0
    assert e.value.status == 504


def test_l3_verifiers_setting() -> None:
    assert IdentitySettings(l3_verifiers="*").l3_verifier_names == {"local", "remote", "tencent_faceid"}
    s = IdentitySettings(l3_verifiers=" tencent_faceid , remote ")
    assert s.l3_verifiers == "tencent_faceid,remote" and "local" not in s.l3_verifier_names
    with pytest.raises(ValueError, match="L3_VERIFIERS"):
        IdentitySettings(l3_verifiers="local,face_id")
    with pytest.raises(ValueError, match="TENCENT_FACEID_URL"):
        IdentitySettings(tencent_faceid_url="https://faceid.example.cn/v1")
    settings = get_identity_settings()
    saved = settings.l3_verifiers
    try:
        assert settings.l3_verifiers == "*" and may_grant_l3("local")  # the default: as before
        settings.l3_verifiers = "tencent_faceid"
        assert may_grant_l3("tencent_faceid") and not may_grant_l3("local") and not may_grant_l3("remote")
    finally:
        settings.l3_verifiers = saved


# Through the identity API ------------------------------------------------------------------------


@pytest.fixture
def tencent_settings(sandbox) -> Iterator[Any]:
    _sb, server, _ = sandbox
    settings = get_identity_settings()
    fields = (
        "verifier",
        "tencent_faceid_url",
        "tencent_faceid_secret_id",
        "tencent_faceid_secret_key",
        "tencent_faceid_timeout_s",
    )
    saved = {f: getattr(settings, f) for f in fields}
    settings.verifier = "tencent_faceid"
    settings.tencent_faceid_url = server.url
    settings.tencent_faceid_secret_id = SECRET_ID
    settings.tencent_faceid_secret_key = type(saved["tencent_faceid_secret_key"])(SECRET_KEY)
    settings.tencent_faceid_timeout_s = 60.0
    assert isinstance(get_verifier(), TencentFaceIDVerifier)
    yield settings
    for f, v in saved.items():
        setattr(settings, f, v)


async def test_api_grants_l3_through_tencent(
    client, login, person_factory, motion_frames, session, sandbox, tencent_settings
) -> None:
    _sb, _server, registry = sandbox
    name, number = await person_factory("奥巴马")
    registry[number] = (name, face_bytes("obama_3.jpg"))
    headers = await login()
    assert (await real_name(client, headers, name, number)).status_code == 200
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    assert r.status_code == 200, r.text
    assert r.json()["identity_level"] == 3
    aid = await account_id(client, headers)
    face = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert [(a.verifier, a.outcome) for a in face] == [("tencent_faceid", "passed")]


async def test_api_timeout_is_504_counted_and_stores_nothing(
    client, login, person_factory, motion_frames, session, sandbox, tencent_settings
) -> None:
    sb, _server, registry = sandbox
    name, number = await person_factory("奥巴马")
    registry[number] = (name, face_bytes("obama_3.jpg"))
    headers = await login()
    assert (await real_name(client, headers, name, number)).status_code == 200
    await consented(client, headers)
    c = await challenge(client, headers)
    tencent_settings.tencent_faceid_timeout_s = 1.0
    sb.delay_s = 3.0
    try:
        r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    finally:
        sb.delay_s = 0.0
    problem(r, 504, "identity.real_person_service_timeout")
    aid = await account_id(client, headers)
    face = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert [(a.verifier, a.outcome, a.code) for a in face] == [
        ("tencent_faceid", "refused", "identity.real_person_service_timeout")
    ]
    assert (await me(client, headers))["identity_level"] == 2
    profiles = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).all()
    assert all(p.template_enc is None for p in profiles)
    await asyncio.sleep(0)


async def test_api_verifier_not_allowed_does_not_grant_l3(client, login, person_factory, fix_steps) -> None:
    from identity_api_helpers import GENUINE_CLIP, genuine_resident, upload_clip, video_bytes

    settings = get_identity_settings()
    saved = settings.verifier, settings.l3_verifiers
    settings.verifier, settings.l3_verifiers = "local", "tencent_faceid"
    try:
        headers = await genuine_resident(client, login, person_factory)
        fix_steps(["blink"])
        c = await challenge(client, headers)
        r = await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP))
        # The local check passed, but this deployment does not take it for L3: no level, no token.
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "identity.verifier_not_certified" and "step_up_token" not in r.json()
        assert (await me(client, headers))["identity_level"] == 2
    finally:
        settings.verifier, settings.l3_verifiers = saved
