"""Face checks through the API: real app, real face engine, real captures from
tests/fixtures/faces/video, local data center.

Consent and level first, the challenge, the right person reaching L3 with one real clip, the wrong
challenge and the wrong person failing, and every way an upload is refused (each recorded),
locally and through the remote real-person service adapter (which still takes stills: the
licensed service does its own liveness).
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets

import pytest
from identity_api_helpers import (
    API,
    GENUINE_CLIP,
    GENUINE_PHOTO,
    account_id,
    attempts,
    burst_of,
    challenge,
    consented,
    genuine_resident,
    l2_resident,
    me,
    problem,
    still_of,
    upload,
    upload_burst,
    upload_clip,
    video_bytes,
)
from identity_helpers import challenge_frames
from sqlmodel import select

from app_api.core.crypto import decrypt_bytes
from app_api.core.redis import get_redis
from identity.models import IdentityFaceProfile


async def test_face_check_needs_l2_and_its_own_consent(client, login, person_factory) -> None:
    l1 = await login()
    await consented(client, l1)
    body = problem(
        await client.post(f"{API}/face/challenges", json={}, headers=l1), 403, "identity.level_required"
    )
    assert body["level_required"] == 2
    l2 = await l2_resident(client, login, person_factory)
    problem(
        await client.post(f"{API}/face/challenges", json={}, headers=l2),
        403,
        "identity.face_consent_required",
    )
    problem(
        await client.post(f"{API}/face/consent", json={"agree": False}, headers=l2),
        422,
        "identity.consent_not_given",
    )


async def test_challenge_is_a_random_order_of_three_moves(client, login, person_factory) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    seen = set()
    for _ in range(6):
        c = await challenge(client, headers)
        assert sorted(c["steps"]) == ["blink", "turn_left", "turn_right"]
        assert c["expires_in"] == 120 and len(c["instructions"]) == 3
        assert c["capture"]["min_fps"] == 8 and c["capture"]["min_duration_ms"] == 1000
        seen.add(tuple(c["steps"]))
    assert len(seen) > 1  # 6 draws of 6 orders all equal: probability 1/7776
    problem(
        await client.post(f"{API}/face/challenges", json={"purpose": "bad purpose!"}, headers=headers),
        422,
        "identity.purpose_invalid",
    )


async def test_the_right_person_doing_the_challenge_in_one_clip_reaches_l3(
    client, login, person_factory, session, fix_steps
) -> None:
    headers = await genuine_resident(client, login, person_factory)
    fix_steps(["blink"])
    c = await challenge(client, headers)
    assert c["steps"] == ["blink"] and c["instructions"] == ["眨眨眼"]
    r = await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identity_level"] == 3 and body["purpose"] == "identity.l3"
    assert len(body["step_up_token"]) > 30 and body["expires_in"] == 300
    aid = await account_id(client, headers)
    view = await me(client, headers)
    assert view["identity_level"] == 3
    assert view["face"]["data_stored"] is True
    face = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert [a.outcome for a in face] == ["passed"]
    assert face[0].data["capture"] == "clip" and face[0].data["steps"] == ["blink"]
    assert face[0].distance is not None and face[0].distance <= face[0].tolerance == 0.5
    # What the capture showed is kept with the attempt, encrypted: the blink the README annotates
    # (frames 26-30, 43-47, 71-74; every 2nd frame analysed) and the track's continuity.
    scores = face[0].scores
    blinks = scores["capture"]["blinks"]
    assert scores["capture"]["fps"] == 25.0 and any(24 <= b["start"] <= 30 and b["ok"] for b in blinks)
    assert scores["capture"]["continuity"]["micro_motion"] > 0
    assert "blinks" not in face[0].data and "capture" not in str(face[0].data.get("figures", ""))
    # Template and ID photo are stored encrypted, bound to this account.
    profile = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).one()
    photo = still_of(*GENUINE_PHOTO)
    assert profile.id_photo_enc is not None and photo[:64] not in profile.id_photo_enc
    assert decrypt_bytes(profile.id_photo_enc, aad=f"id_photo:{aid}") == photo
    assert (
        profile.template_enc is not None
        and len(decrypt_bytes(profile.template_enc, aad=f"face_template:{aid}")) == 512
    )
    with pytest.raises(Exception):
        decrypt_bytes(profile.template_enc, aad="face_template:someone-else")
    # Nothing in the API answers with face data: no long encoded values, not the photo.
    view_text = (await client.get(f"{API}/me", headers=headers)).text
    for text in (view_text, r.text):
        assert base64.b64encode(photo[:300]).decode()[:40] not in text
        assert max(len(w) for w in re.split(r'[",\s]', text)) < 200

    # The same nonce cannot be used twice.
    again = await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP))
    problem(again, 409, "identity.challenge_used")


async def test_the_right_person_with_the_wrong_challenge_fails_and_counts(
    client, login, person_factory, session, fix_steps
) -> None:
    """The clip shows blinks only: a challenge to turn left is not met, and the failure counts."""
    headers = await genuine_resident(client, login, person_factory)
    fix_steps(["turn_left"])
    c = await challenge(client, headers)
    body = problem(
        await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP)),
        422,
        "identity.liveness_failed",
    )
    assert body["failed_step"] == "turn_left" and body["attempts_left"] == 4
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.outcome == "failed" and att.code == "identity.liveness_failed"
    assert "expected turn_left" in att.scores["reason"]
    view = await me(client, headers)
    assert view["identity_level"] == 2 and view["face"]["data_stored"] is False
    assert view["face"]["failures_today"] == 1


async def test_expired_or_unknown_challenge_is_refused(client, login, person_factory) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await get_redis()
    aid = await account_id(client, headers)
    keys = [k async for k in r.scan_iter(match=f"identity:challenge:{aid}:*")]
    assert len(keys) == 1 and 0 < await r.ttl(keys[0]) <= 120
    await r.delete(keys[0])  # what Redis does after 2 minutes
    clip = video_bytes(GENUINE_CLIP)
    problem(await upload_clip(client, headers, c["challenge_id"], clip), 410, "identity.challenge_expired")
    problem(
        await upload_clip(client, headers, secrets.token_urlsafe(24), clip), 410, "identity.challenge_expired"
    )
    # Another resident's nonce is unknown to this one.
    other = await l2_resident(client, login, person_factory)
    await consented(client, other)
    theirs = await challenge(client, other)
    problem(
        await upload_clip(client, headers, theirs["challenge_id"], clip), 410, "identity.challenge_expired"
    )


async def test_the_daily_lock_after_the_last_allowed_failure(
    client, login, person_factory, session, fix_steps
) -> None:
    headers = await genuine_resident(client, login, person_factory)
    aid = await account_id(client, headers)
    r = await get_redis()
    # Four failures recorded earlier today (as the previous test records one).
    from identity.challenges import fail_key

    await r.set(fail_key(aid), b"4", ex=3600)
    fix_steps(["turn_right"])
    c = await challenge(client, headers)
    body = problem(
        await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP)),
        422,
        "identity.liveness_failed",
    )
    assert body["attempts_left"] == 0 and body["locked_for_s"] > 0
    locked = await client.post(f"{API}/face/challenges", json={}, headers=headers)
    problem(locked, 429, "identity.face_locked")
    assert int(locked.headers["retry-after"]) > 0
    assert (await me(client, headers))["face"]["locked"] is True


async def test_a_different_person_is_refused_with_the_distance_logged(
    client, login, person_factory, session, fix_steps
) -> None:
    # The registry photo is Obama's; the clip is GRID person 3's.
    headers = await l2_resident(client, login, person_factory, name="奥巴马", photo="obama_3.jpg")
    await consented(client, headers)
    fix_steps(["blink"])
    c = await challenge(client, headers)
    problem(
        await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP)),
        422,
        "identity.face_mismatch",
    )
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.code == "identity.face_mismatch" and att.distance is not None and att.distance > 0.6
    assert (await me(client, headers))["identity_level"] == 2


async def test_stills_no_longer_reach_l3_with_the_local_verifier(
    client, login, person_factory, motion_frames, session
) -> None:
    """The collage of press photos that passed before (issue 13) is refused as not a capture."""
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    body = problem(
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"])),
        422,
        "identity.capture_required",
    )
    assert "timestamps_ms" in body["detail"]
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.outcome == "refused" and att.code == "identity.capture_required"
    view = await me(client, headers)
    assert view["identity_level"] == 2 and view["face"]["failures_today"] == 0


def _grid_burst(ext: str = ".jpg") -> tuple[list[bytes], list[float]]:
    return burst_of(GENUINE_CLIP, 0, 39, ext=ext)


def _bad(kind: str) -> dict:
    """The upload of each bad-input case: a clip, or a burst with its timestamps (and extra fields)."""
    frames, ts = _grid_burst()
    if kind == "not_a_video":
        return {"clip": b"this is not a video at all, only words" * 4}
    if kind == "huge_clip":
        return {"clip": b"\x00" * (16 * 1024 * 1024 + 10)}
    if kind == "clip_and_frames":
        return {"clip": video_bytes(GENUINE_CLIP), "frames": frames[:10]}
    if kind == "frame_rate":
        return {"frames": frames, "ts": [k * 200.0 for k in range(len(frames))]}  # 5 fps
    if kind == "too_short":
        return {"frames": frames[:6], "ts": ts[:6]}
    if kind == "out_of_order":
        ts = list(ts)
        ts[10], ts[11] = ts[11], ts[10]
        return {"frames": frames, "ts": ts}
    if kind == "duplicated":
        return {"frames": [*frames[:20], frames[19], *frames[21:]], "ts": ts}
    if kind == "mixed_resolution":
        small, _ = burst_of(GENUINE_CLIP, 0, 39, scale=0.5)
        return {"frames": frames[:20] + small[20:], "ts": ts}
    if kind == "timestamps_count":
        return {"frames": frames, "ts": ts[:-1]}
    if kind == "timestamps_not_json":
        return {"frames": frames, "ts": "0, 40, 80"}
    if kind == "windows":
        return {"frames": frames, "ts": ts, "step_windows_ms": [[0, 100], [100, 200]]}
    if kind == "not_an_image":
        frames = list(frames)
        frames[5] = b"this is not an image"
        return {"frames": frames, "ts": ts}
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("not_a_video", 422, "identity.capture_invalid"),
        ("huge_clip", 413, "identity.capture_too_large"),
        ("clip_and_frames", 422, "identity.capture_invalid"),
        ("frame_rate", 422, "identity.capture_frame_rate"),
        ("too_short", 422, "identity.capture_too_short"),
        ("out_of_order", 422, "identity.capture_out_of_order"),
        ("duplicated", 422, "identity.capture_duplicate_frames"),
        ("mixed_resolution", 422, "identity.capture_mixed_resolution"),
        ("timestamps_count", 422, "identity.capture_invalid"),
        ("timestamps_not_json", 422, "identity.capture_invalid"),
        ("windows", 422, "identity.capture_invalid"),
        ("not_an_image", 422, "identity.capture_invalid"),
    ],
)
async def test_bad_captures_get_their_own_code_and_store_nothing_but_the_record(
    client, login, person_factory, session, fix_steps, kind, status, code
) -> None:
    headers = await genuine_resident(client, login, person_factory)
    fix_steps(["blink"])
    c = await challenge(client, headers)
    case = _bad(kind)

    async def send():
        if "frames" in case and "clip" in case:
            import io

            files = [("clip", ("c.mpg", io.BytesIO(case["clip"]), "video/mpeg"))] + [
                ("frames", (f"f{i}.jpg", io.BytesIO(b), "image/jpeg")) for i, b in enumerate(case["frames"])
            ]
            return await client.post(
                f"{API}/face/verifications",
                data={"challenge_id": c["challenge_id"]},
                files=files,
                headers=headers,
            )
        if "clip" in case:
            return await upload_clip(client, headers, c["challenge_id"], case["clip"])
        extra = {"step_windows_ms": case["step_windows_ms"]} if "step_windows_ms" in case else {}
        return await upload_burst(client, headers, c["challenge_id"], case["frames"], case["ts"], **extra)

    body = problem(await send(), status, code)
    assert body["title"] and any("\u4e00" <= ch <= "\u9fff" for ch in body["title"])
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.outcome == "refused" and att.code == code
    view = await me(client, headers)
    assert view["identity_level"] == 2 and view["face"]["data_stored"] is False
    assert view["face"]["failures_today"] == 0  # bad input does not count towards the lock
    # The nonce was spent all the same.
    problem(await send(), 409, "identity.challenge_used")


async def test_one_nonce_uploaded_twice_at_once_is_used_once(
    client, login, person_factory, fix_steps
) -> None:
    headers = await genuine_resident(client, login, person_factory)
    fix_steps(["blink"])
    c = await challenge(client, headers)
    clip = video_bytes(GENUINE_CLIP)
    a, b = await asyncio.gather(
        upload_clip(client, headers, c["challenge_id"], clip),
        upload_clip(client, headers, c["challenge_id"], clip),
    )
    assert sorted([a.status_code, b.status_code]) == [200, 409]
    token = (a if a.status_code == 200 else b).json()["step_up_token"]
    # The step-up token is spent once even when presented twice at the same moment.
    from identity.step_up import consume_step_up

    aid = await account_id(client, headers)
    results = await asyncio.gather(*(consume_step_up(aid, "identity.l3", token) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]


async def test_face_check_through_the_remote_service_adapter(
    client, login, person_factory, motion_frames, live_url, session
) -> None:
    """WOJIA_IDENTITY_VERIFIER=remote: the API calls the real-person service over HTTP (here the
    development sandbox served by the app itself on loopback), signed both ways."""
    from identity.config import get_identity_settings

    settings = get_identity_settings()
    saved = settings.verifier, settings.real_person_url
    settings.verifier, settings.real_person_url = "remote", f"{live_url}/sandbox/realperson"
    try:
        headers = await l2_resident(client, login, person_factory)
        await consented(client, headers)
        c = await challenge(client, headers)
        still = await upload(client, headers, c["challenge_id"], [motion_frames["front"]] * 5)
        problem(still, 422, "identity.liveness_failed")
        c = await challenge(client, headers)
        r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
        assert r.status_code == 200, r.text
        assert r.json()["identity_level"] == 3
    finally:
        settings.verifier, settings.real_person_url = saved
    aid = await account_id(client, headers)
    face = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert [(a.verifier, a.outcome) for a in face] == [("remote", "failed"), ("remote", "passed")]
    assert face[1].similarity is not None and face[1].similarity >= 50 and face[1].distance is None
    profile = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).one()
    assert profile.template_enc is None and profile.verifier == "remote"
