"""Face checks through the API: real app, real face engine on tests/fixtures/faces, local data center.

Consent and level first, the challenge, the right person reaching L3, and every way a check fails
or is refused (each recorded), locally and through the remote real-person service adapter.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets

import pytest
from identity_api_helpers import (
    API,
    account_id,
    attempts,
    challenge,
    consented,
    l2_resident,
    me,
    problem,
    upload,
)
from identity_helpers import challenge_frames, face_bytes, png_header_only
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
        seen.add(tuple(c["steps"]))
    assert len(seen) > 1  # 6 draws of 6 orders all equal: probability 1/7776
    problem(
        await client.post(f"{API}/face/challenges", json={"purpose": "bad purpose!"}, headers=headers),
        422,
        "identity.purpose_invalid",
    )


async def test_the_right_person_doing_the_challenge_reaches_l3(
    client, login, person_factory, motion_frames, session
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
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
    assert face[0].distance is not None and face[0].distance <= face[0].tolerance == 0.5
    # Template and ID photo are stored encrypted, bound to this account.
    profile = (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).one()
    photo = face_bytes("obama_3.jpg")
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
    again = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    problem(again, 409, "identity.challenge_used")


async def test_expired_or_unknown_challenge_is_refused(client, login, person_factory, motion_frames) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await get_redis()
    aid = await account_id(client, headers)
    keys = [k async for k in r.scan_iter(match=f"identity:challenge:{aid}:*")]
    assert len(keys) == 1 and 0 < await r.ttl(keys[0]) <= 120
    await r.delete(keys[0])  # what Redis does after 2 minutes
    problem(
        await upload(client, headers, c["challenge_id"], [motion_frames["front"]] * 4),
        410,
        "identity.challenge_expired",
    )
    problem(
        await upload(client, headers, secrets.token_urlsafe(24), [motion_frames["front"]] * 4),
        410,
        "identity.challenge_expired",
    )
    # Another resident's nonce is unknown to this one.
    other = await l2_resident(client, login, person_factory)
    await consented(client, other)
    theirs = await challenge(client, other)
    problem(
        await upload(client, headers, theirs["challenge_id"], [motion_frames["front"]] * 4),
        410,
        "identity.challenge_expired",
    )


async def test_replayed_still_fails_liveness_and_counts_towards_the_lock(
    client, login, person_factory, motion_frames, session
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    body = problem(
        await upload(client, headers, c["challenge_id"], [motion_frames["front"]] * 7),
        422,
        "identity.liveness_failed",
    )
    assert body["failed_step"] == c["steps"][0] and body["attempts_left"] == 4
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.outcome == "failed" and att.distance is not None  # the distance is logged anyway
    view = await me(client, headers)
    assert view["identity_level"] == 2 and view["face"]["data_stored"] is False
    assert view["face"]["failures_today"] == 1
    # Three more failures recorded the same way would follow; jump to the last allowed one.
    r = await get_redis()
    keys = [k async for k in r.scan_iter(match=f"identity:face_fail:{aid}:*")]
    await r.set(keys[0], b"4", keepttl=True)
    c = await challenge(client, headers)
    body = problem(
        await upload(client, headers, c["challenge_id"], [motion_frames["front"]] * 7),
        422,
        "identity.liveness_failed",
    )
    assert body["attempts_left"] == 0 and body["locked_for_s"] > 0
    locked = await client.post(f"{API}/face/challenges", json={}, headers=headers)
    problem(locked, 429, "identity.face_locked")
    assert int(locked.headers["retry-after"]) > 0
    assert (await me(client, headers))["face"]["locked"] is True


async def test_a_different_person_is_refused_with_the_distance_logged(
    client, login, person_factory, motion_frames, session
) -> None:
    # The registry photo is Biden's; the frames are Obama's.
    headers = await l2_resident(client, login, person_factory, name="拜登", photo="biden_1.jpg")
    await consented(client, headers)
    c = await challenge(client, headers)
    problem(
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"])),
        422,
        "identity.face_mismatch",
    )
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.code == "identity.face_mismatch" and att.distance is not None and att.distance > 0.7
    assert (await me(client, headers))["identity_level"] == 2


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ("no_face.jpg", 422, "identity.no_face"),
        ("two_faces_obama_biden.jpg", 422, "identity.multiple_faces"),
        (b"this is not an image", 422, "identity.image_invalid"),
        ("50mp", 413, "identity.image_too_many_pixels"),
        ("big", 413, "identity.image_too_large"),
        ("many", 422, "identity.too_many_frames"),
        ("few", 422, "identity.too_few_frames"),
    ],
)
async def test_bad_uploads_get_their_own_code_and_store_nothing_but_the_record(
    client, login, person_factory, motion_frames, session, bad, status, code
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    frames = challenge_frames(motion_frames, c["steps"])
    if bad == "50mp":
        frames[2] = png_header_only(8660, 5774)
    elif bad == "big":
        frames[2] = b"\xff\xd8\xff" + b"\x00" * (4 * 1024 * 1024 + 10)
    elif bad == "many":
        frames = frames * 3
    elif bad == "few":
        frames = frames[:2]
    else:
        frames[2] = face_bytes(bad) if isinstance(bad, str) else bad
    problem(await upload(client, headers, c["challenge_id"], frames), status, code)
    aid = await account_id(client, headers)
    (att,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert att.outcome == "refused" and att.code == code
    view = await me(client, headers)
    assert view["identity_level"] == 2 and view["face"]["data_stored"] is False
    assert view["face"]["failures_today"] == 0  # bad input does not count towards the lock
    # The nonce was spent all the same.
    problem(await upload(client, headers, c["challenge_id"], frames), 409, "identity.challenge_used")


async def test_one_nonce_uploaded_twice_at_once_is_used_once(
    client, login, person_factory, motion_frames
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    frames = challenge_frames(motion_frames, c["steps"])
    a, b = await asyncio.gather(
        upload(client, headers, c["challenge_id"], frames), upload(client, headers, c["challenge_id"], frames)
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
