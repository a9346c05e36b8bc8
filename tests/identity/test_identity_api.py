"""The identity API end to end: real app, real face engine on tests/fixtures/faces, local data center.

Residents are created through the real SMS login; their population records (with an ID photo from
tests/fixtures/faces) are written into the local data center first.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
from typing import Any

import httpx
import pytest
from identity_helpers import challenge_frames, face_bytes
from sqlmodel import select

from app_api.core.crypto import decrypt_bytes
from app_api.core.redis import get_redis
from app_api.platform.datahub.citizen_id import make
from identity.models import IdentityAttempt, IdentityFaceProfile

API = "/api/v1/identity"


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


async def l2_resident(client, login, person_factory, name="奥巴马", photo="obama_3.jpg") -> dict[str, str]:
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
    files = [("frames", (f"f{i}.jpg", io.BytesIO(b), "image/jpeg")) for i, b in enumerate(frames)]
    return await client.post(
        f"{API}/face/verifications", data={"challenge_id": challenge_id}, files=files, headers=headers
    )


async def attempts(session, aid: str) -> list[IdentityAttempt]:
    rows = (await session.exec(select(IdentityAttempt).where(IdentityAttempt.account_id == aid))).all()
    return sorted(rows, key=lambda a: a.created_at)


# --- L2 ------------------------------------------------------------------------------------------


async def test_real_name_raises_the_level_to_2_and_masks(client, login, person_factory) -> None:
    headers = await login()
    name, number = await person_factory("张建国", None)
    r = await real_name(client, headers, name, number.lower() if number.endswith("X") else number)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identity_level"] == 2
    assert body["real_name"] == "张**" and number not in r.text and body["id_number"].endswith(number[-4:])
    view = await me(client, headers)
    assert view["identity_level"] == 2
    assert [h["outcome"] for h in view["history"]] == ["passed"]
    assert any(c["purpose"] == "identity.real_name" for c in view["consents"])
    problem(await real_name(client, headers, name, number), 409, "identity.real_name_already_verified")
    # The same number cannot verify a second account.
    other = await login()
    problem(await real_name(client, other, name, number), 409, "identity.id_number_taken")


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("34160219580312001", "18位"),  # 17 digits
        ("341602195803120131", "校验位"),  # wrong check digit
        ("991602195803120135", "地区码"),  # no such province
        ("341602195802300135", "出生日期"),  # 30 February
        ("341602209912310135", "出生日期"),  # born in the future
    ],
)
async def test_malformed_citizen_id_is_refused_before_any_lookup(client, login, number, reason) -> None:
    headers = await login()
    body = problem(await real_name(client, headers, "张建国", number), 422, "identity.id_number_invalid")
    assert reason in body["detail"]
    assert (await me(client, headers))["history"] == []


async def test_wrong_name_fails_is_recorded_and_rate_limited(client, login, person_factory, session) -> None:
    headers = await login()
    _name, number = await person_factory("王小明", None)
    body = problem(await real_name(client, headers, "王大明", number), 422, "identity.real_name_mismatch")
    assert body["attempts_left"] == 4
    # An unknown number gets the same answer (no probing of which numbers exist).
    unknown = make("341602", __import__("datetime").date(1990, 1, 1), 998)
    problem(await real_name(client, headers, "王小明", unknown), 422, "identity.real_name_mismatch")
    # The failures were committed although the requests failed: history and audit keep them.
    view = await me(client, headers)
    assert view["identity_level"] == 1
    assert [h["code"] for h in view["history"]] == ["identity.real_name_mismatch"] * 2
    for _ in range(3):
        problem(await real_name(client, headers, "王大明", number), 422, "identity.real_name_mismatch")
    r = await real_name(client, headers, "王小明", number)
    problem(r, 429, "identity.real_name_rate_limited")
    assert int(r.headers["retry-after"]) > 0


async def test_real_name_needs_agreement_and_login(client, login) -> None:
    headers = await login()
    r = await client.post(
        f"{API}/real-name",
        json={"name": "张建国", "id_number": "341602195803120135", "agree": False},
        headers=headers,
    )
    problem(r, 422, "identity.consent_not_given")
    problem(await client.get(f"{API}/me"), 401, "auth.unauthorized")


# --- face: consent, challenge, verification -----------------------------------------------------


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


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


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
        frames[2] = _png_header_only(8660, 5774)
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


# --- consent withdrawal and deletion -----------------------------------------------------------


async def test_withdrawing_face_consent_deletes_face_data(
    client, login, person_factory, motion_frames
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    assert (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).status_code == 200
    assert (await me(client, headers))["face"]["data_stored"] is True
    r = await client.delete(f"{API}/face/consent", headers=headers)
    assert r.status_code == 200 and r.json() == {"consents_withdrawn": 1, "face_data_deleted": True}
    view = await me(client, headers)
    assert view["face"] == {**view["face"], "consented": False, "data_stored": False}
    # The level reached stays; a new face check needs a new consent.
    assert view["identity_level"] == 3
    problem(
        await client.post(f"{API}/face/challenges", json={}, headers=headers),
        403,
        "identity.face_consent_required",
    )


async def test_withdrawal_through_the_platform_consent_endpoint_also_deletes(
    client, login, person_factory, motion_frames, session
) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    assert (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).status_code == 200
    consent = next(x for x in (await me(client, headers))["consents"] if x["purpose"] == "identity.face")
    r = await client.delete(f"/api/v1/me/consents/{consent['id']}", headers=headers)
    assert r.status_code == 200, r.text
    assert (await me(client, headers))["face"]["data_stored"] is False
    aid = await account_id(client, headers)
    assert (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).first() is None


async def test_delete_my_face_data(client, login, person_factory, motion_frames) -> None:
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    assert (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).status_code == 200
    r = await client.delete(f"{API}/me/face-data", headers=headers)
    assert r.json()["face_data_deleted"] is True
    r = await client.delete(f"{API}/me/face-data", headers=headers)
    assert r.json() == {"consents_withdrawn": 0, "face_data_deleted": False}


# --- step-up ----------------------------------------------------------------------------------


async def test_step_up_token_is_single_use_and_bound_to_its_purpose(
    client, login, person_factory, motion_frames
) -> None:
    guarded = "/api/v1/test-only/loan-apply"
    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    problem(await client.post(guarded, headers=headers), 403, "identity.step_up_required")
    c = await challenge(client, headers, purpose="fund.withdraw")
    wrong = (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).json()
    problem(
        await client.post(guarded, headers={**headers, "X-Step-Up-Token": wrong["step_up_token"]}),
        403,
        "identity.step_up_invalid",
    )
    # Second check: the stored template now stands in for the registry photo.
    c = await challenge(client, headers, purpose="loan.apply")
    ok = (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).json()
    token = {**headers, "X-Step-Up-Token": ok["step_up_token"]}
    other = await login()
    problem(
        await client.post(guarded, headers={**other, "X-Step-Up-Token": ok["step_up_token"]}),
        403,
        "identity.step_up_invalid",
    )
    r = await client.post(guarded, headers=token)
    assert r.status_code == 200, r.text
    assert r.json()["applied_by"] == await account_id(client, headers)
    problem(await client.post(guarded, headers=token), 403, "identity.step_up_invalid")
    aid = await account_id(client, headers)
    redis = await get_redis()
    keys = [k async for k in redis.scan_iter(match=f"identity:stepup:{aid}:*")]
    # Only the unused fund.withdraw token is left, expiring within 5 minutes.
    assert len(keys) == 1 and b"fund.withdraw" in keys[0] and 0 < await redis.ttl(keys[0]) <= 300


# --- agent attestation ----------------------------------------------------------------------------


async def test_agent_attests_in_person_at_a_station(client, login, person_factory, session) -> None:
    phone = "137" + f"{secrets.randbelow(10**8):08d}"
    resident = await login(phone)
    name, number = await person_factory("刘芳", None)
    assert (await real_name(client, resident, name, number)).status_code == 200
    agent = await login(roles=["agent"], station_id="changshu")
    body = {"resident_phone": phone, "id_number": number, "name": name, "resident_agreed": True}
    wrong = {**body, "name": "刘芬"}
    problem(
        await client.post(f"{API}/agent/attestations", json=wrong, headers=agent),
        422,
        "identity.attestation_mismatch",
    )
    r = await client.post(f"{API}/agent/attestations", json=body, headers=agent)
    assert r.status_code == 201, r.text
    assert r.json()["station_id"] == "changshu"
    view = await me(client, resident)
    assert view["identity_level"] == 3
    assert [(h["kind"], h["outcome"], h["station_id"]) for h in view["history"][:2]] == [
        ("agent_attestation", "passed", "changshu"),
        ("agent_attestation", "failed", "changshu"),
    ]
    assert any(
        c["purpose"] == "identity.agent_attestation" and c["granted_via"] == "agent" for c in view["consents"]
    )


async def test_attestation_only_by_station_agents_for_l2_residents(client, login, person_factory) -> None:
    phone = "137" + f"{secrets.randbelow(10**8):08d}"
    await login(phone)
    body = {
        "resident_phone": phone,
        "id_number": "341602195803120135",
        "name": "张建国",
        "resident_agreed": True,
    }
    resident_caller = await login()
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=resident_caller),
        403,
        "auth.forbidden",
    )
    no_station = await login(roles=["agent"])
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=no_station),
        403,
        "identity.agent_station_required",
    )
    agent = await login(roles=["agent"], station_id="yiwu")
    problem(
        await client.post(f"{API}/agent/attestations", json=body, headers=agent),
        422,
        "identity.resident_not_real_name",
    )
    problem(
        await client.post(
            f"{API}/agent/attestations", json={**body, "resident_agreed": False}, headers=agent
        ),
        422,
        "identity.consent_not_given",
    )


async def test_sweep_deletes_face_data_of_consents_withdrawn_elsewhere(
    client, login, person_factory, motion_frames, session
) -> None:
    from app_api.core.db import session_scope
    from app_api.platform.consent import service as consent_service
    from identity.tasks import sweep_withdrawn_face_consents

    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    assert (
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    ).status_code == 200
    aid = await account_id(client, headers)
    consent = next(x for x in (await me(client, headers))["consents"] if x["purpose"] == "identity.face")
    async with session_scope() as s:  # withdrawn by some other path than identity's own
        await consent_service.withdraw(s, account_id=aid, consent_id=consent["id"])
    assert await sweep_withdrawn_face_consents() >= 1
    assert (
        await session.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
    ).first() is None


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


async def test_one_nonce_uploaded_twice_at_once_is_used_once(
    client, login, person_factory, motion_frames
) -> None:
    import asyncio

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
