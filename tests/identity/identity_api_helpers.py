"""Helpers of the identity API tests: the calls a resident's client makes, and what they record.

Residents are created through the real SMS login; their population records (with an ID photo from
tests/fixtures/faces, or none) are written into the local data center first (``person_factory``).

The genuine capture is a real clip (tests/fixtures/faces/video, see its README): GRID person 3
reading aloud and blinking three times (``id2_vcd_swwp2s.mpg``, frames 26-30, 43-47, 71-74), checked
against an ID photo of the same person from another recording (frame 10 of ``pwij3p.mpg``). No real
clip holds a whole three-move challenge, so the tests fix the challenge's draw to the moves the clip
shows (``fix_steps``); the draw itself is tested as random.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import httpx
from identity_helpers import FACES
from sqlmodel import select

from identity.models import IdentityAttempt

API = "/api/v1/identity"
VIDEO = FACES / "video"
GENUINE_CLIP = "grid/id2_vcd_swwp2s.mpg"
GENUINE_PHOTO = ("grid/pwij3p.mpg", 10)


def video_bytes(rel: str) -> bytes:
    return (VIDEO / rel).read_bytes()


@functools.cache
def _decoded(rel: str) -> tuple[tuple[Any, float], ...]:
    from identity.face.capture import decode_clip

    return tuple((f.image, f.t_ms) for f in decode_clip(video_bytes(rel)).frames)


def _encode(rgb: Any, ext: str = ".jpg") -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, rgb[:, :, ::-1])
    assert ok
    return bytes(buf.tobytes())


@functools.cache
def still_of(rel: str, frame: int) -> bytes:
    """One frame of a fixture clip as a JPEG (an ID photo, or a still a client might send)."""
    return _encode(_decoded(rel)[frame][0])


def burst_of(
    rel: str, first: int = 0, last: int | None = None, *, scale: float = 1.0, ext: str = ".jpg"
) -> tuple[list[bytes], list[float]]:
    """Frames first..last of a fixture clip as a burst: encoded images and their capture times."""
    import cv2

    frames = _decoded(rel)[first : None if last is None else last + 1]
    out = []
    for rgb, _t in frames:
        img = (
            rgb if scale == 1.0 else cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        )
        out.append(_encode(img, ext))
    return out, [t for _rgb, t in frames]


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["code"] == code, body
    assert body["title"] and body["detail"]
    return body


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    r = await client.get(f"{API}/me", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def account_id(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    return (await client.get("/api/v1/me", headers=headers)).json()["id"]


async def real_name(client, headers, name, number) -> httpx.Response:
    return await client.post(
        f"{API}/real-name", json={"name": name, "id_number": number, "agree": True}, headers=headers
    )


async def l2_resident(
    client, login, person_factory, name="奥巴马", photo: str | bytes | None = "obama_3.jpg"
) -> dict[str, str]:
    headers = await login()
    pname, number = await person_factory(name, photo)
    r = await real_name(client, headers, pname, number)
    assert r.status_code == 200, r.text
    return headers


async def consented(client, headers) -> None:
    r = await client.post(f"{API}/face/consent", json={"agree": True}, headers=headers)
    assert r.status_code == 200, r.text


async def challenge(client, headers, purpose: str = "identity.l3") -> dict[str, Any]:
    r = await client.post(f"{API}/face/challenges", json={"purpose": purpose}, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def upload(client, headers, challenge_id: str, frames: list[bytes]) -> httpx.Response:
    """Stills without timestamps (what the API took before captures; a remote verifier still does)."""
    files = [("frames", (f"f{i}.jpg", io.BytesIO(b), "image/jpeg")) for i, b in enumerate(frames)]
    return await client.post(
        f"{API}/face/verifications", data={"challenge_id": challenge_id}, files=files, headers=headers
    )


async def upload_clip(
    client, headers, challenge_id: str, clip: bytes, *, filename: str = "capture.mpg", **form: Any
) -> httpx.Response:
    """One clip of the challenge (``form``: step_windows_ms as a list, sent as JSON)."""
    data = {"challenge_id": challenge_id, **{k: json.dumps(v) for k, v in form.items()}}
    files = [("clip", (filename, io.BytesIO(clip), "application/octet-stream"))]
    return await client.post(f"{API}/face/verifications", data=data, files=files, headers=headers)


async def upload_burst(
    client, headers, challenge_id: str, frames: list[bytes], timestamps_ms: Any, **form: Any
) -> httpx.Response:
    """A burst: frames with their capture times (``timestamps_ms`` sent as JSON, or as given if a str)."""
    ts = timestamps_ms if isinstance(timestamps_ms, str) else json.dumps(timestamps_ms)
    data = {"challenge_id": challenge_id, "timestamps_ms": ts, **{k: json.dumps(v) for k, v in form.items()}}
    files = [("frames", (f"f{i}.jpg", io.BytesIO(b), "image/jpeg")) for i, b in enumerate(frames)]
    return await client.post(f"{API}/face/verifications", data=data, files=files, headers=headers)


async def genuine_resident(client, login, person_factory, name: str = "格丽德") -> dict[str, str]:
    """An L2 resident with face consent whose registry photo is GRID person 3 (another recording)."""
    headers = await l2_resident(client, login, person_factory, name=name, photo=still_of(*GENUINE_PHOTO))
    await consented(client, headers)
    return headers


async def reach_l3(client, headers, fix_steps, purpose: str = "identity.l3") -> httpx.Response:
    """The genuine clip for a blink challenge: L3 and a step-up token for ``purpose``."""
    fix_steps(["blink"])
    c = await challenge(client, headers, purpose)
    r = await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP))
    assert r.status_code == 200, r.text
    return r


async def attempts(session, aid: str) -> list[IdentityAttempt]:
    rows = (await session.exec(select(IdentityAttempt).where(IdentityAttempt.account_id == aid))).all()
    return sorted(rows, key=lambda a: a.created_at)
