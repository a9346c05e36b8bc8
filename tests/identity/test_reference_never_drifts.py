"""The face reference never drifts (issue 13, item 6): every check is compared with the registry's
ID photo, never with a face from an earlier capture; each attempt's scores are kept encrypted.

Before, each passed check replaced the kept template with the capture's best frame and the next
check compared with that: after one spoof got through, the reference was the attacker's face.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from identity_api_helpers import account_id, attempts, challenge, consented, l2_resident, problem, upload
from identity_helpers import challenge_frames, face_bytes
from sqlmodel import select

from app_api.core.crypto import decrypt_str
from app_api.core.db import sessionmaker
from app_api.platform.audit.models import AuditEvent
from identity.face.engine import FaceAnalysis, face_distance
from identity.face_data import stored_template
from identity.models import IdentityAttempt, IdentityFaceProfile

# What the impostor uploads: a real photo of Biden (a different person from the resident, whose
# registry photo is obama_3.jpg). Its distance to obama_3 is 0.856, to obama_1 (the capture's best
# frame) 0.837: the recorded distance tells which of the two was the reference.
IMPOSTOR = ["biden_2.jpg"] * 5


def _capture_names(steps: list[str]) -> list[str]:
    """The fixture file of each frame ``challenge_frames`` builds (the painted blink is obama_1)."""
    names = {"front": "obama_1.jpg", "closed": "obama_1.jpg", "left": "obama_4.jpg", "right": "obama_2.jpg"}
    moves = {"blink": "closed", "turn_left": "left", "turn_right": "right"}
    return [names["front"]] + [n for s in steps for n in (names[moves[s]], names["front"])]


async def _raw_attempt(attempt_id: str) -> dict[str, Any]:
    async with sessionmaker()() as s:
        conn = await s.connection()
        row = (
            await conn.execute(
                sa.text("SELECT scores_enc, data FROM identity_attempt WHERE id = :id"), {"id": attempt_id}
            )
        ).one()
    data = row.data if isinstance(row.data, str) else json.dumps(row.data)
    return {"scores_enc": bytes(row.scores_enc), "data": data}


async def test_a_later_check_is_compared_with_the_registry_photo_not_the_last_capture(
    client: Any,
    login: Any,
    person_factory: Any,
    motion_frames: dict[str, bytes],
    analysed: Callable[[str], FaceAnalysis],
    session: Any,
) -> None:
    headers = await l2_resident(client, login, person_factory)  # registry photo: obama_3.jpg
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    assert r.status_code == 200, r.text
    aid = await account_id(client, headers)
    (passed,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert passed.outcome == "passed" and passed.data["reference"] == "registry_photo"
    registry = analysed("obama_3.jpg").encoding
    capture = analysed(_capture_names(c["steps"])[passed.data["best_frame"]]).encoding

    # What is kept is the registry photo's encoding, not the capture's.
    async with sessionmaker()() as s:
        profile = (
            await s.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
        ).one()
        kept = stored_template(profile)
    assert kept is not None
    assert face_distance(kept, registry) < 1e-3
    assert face_distance(kept, capture) > 0.1

    # A different person's frames, later: compared with the registry photo, and refused.
    c = await challenge(client, headers, purpose="loans.apply")
    r = await upload(client, headers, c["challenge_id"], [face_bytes(n) for n in IMPOSTOR])
    assert r.status_code == 422, r.text
    assert r.json()["code"] in {"identity.face_mismatch", "identity.liveness_failed"}
    assert "step_up_token" not in r.text
    session.expunge_all()
    later = [a for a in await attempts(session, aid) if a.kind == "face"][-1]
    assert later.outcome == "failed" and later.purpose == "loans.apply"
    assert later.data["reference"] == "registry_photo" and later.data["reference_encoding_kept"] is True
    impostor = analysed(IMPOSTOR[later.data["best_frame"]]).encoding
    to_registry, to_capture = face_distance(impostor, registry), face_distance(impostor, capture)
    # The two candidate references are far enough apart for the recorded distance to tell them apart.
    assert abs(to_registry - to_capture) > 0.01, (to_registry, to_capture)
    assert later.distance is not None
    assert abs(later.distance - to_registry) < 1e-3, (later.distance, to_registry, to_capture)
    assert later.distance > 0.6  # far from the resident: not a match, whatever liveness said

    # The attempt's scores are in the row only encrypted: not in the raw column, the JSON or the
    # audit chain; they open only with the row's own AAD.
    for a in (passed, later):
        raw = await _raw_attempt(a.id)
        assert a.distance is not None
        for text in (f"{a.distance:.4f}", f"{a.distance:.3f}", repr(a.distance)):
            assert text.encode() not in raw["scores_enc"]
            assert text not in raw["data"]
        scores = json.loads(decrypt_str(raw["scores_enc"], aad=f"identity_attempt_scores:{a.id}"))
        assert scores["distance"] == a.distance and "min_ear" in scores and "frame_distances" in scores
        with pytest.raises(Exception):
            decrypt_str(
                raw["scores_enc"], aad=f"identity_attempt_scores:{passed.id if a is later else later.id}"
            )
        async with sessionmaker()() as s:
            events = (
                await s.exec(
                    select(AuditEvent).where(
                        AuditEvent.subject_id == aid, sa.or_(AuditEvent.action.like("identity.face_%"))
                    )
                )
            ).all()
        lines = [json.dumps(e.data) for e in events if e.data.get("attempt_id") == a.id]
        assert len(lines) == 1 and f"{a.distance:.4f}" not in lines[0] and "distance" not in lines[0]


async def test_a_renewed_id_photo_replaces_the_kept_encoding(
    client: Any,
    login: Any,
    person_factory: Any,
    motion_frames: dict[str, bytes],
    analysed: Callable[[str], FaceAnalysis],
) -> None:
    """The kept encoding is used only while the registry holds the photo it came from."""
    from app_api.core.crypto import encrypt_bytes
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.models import PopulationRecord

    headers = await l2_resident(client, login, person_factory)
    await consented(client, headers)
    c = await challenge(client, headers)
    r = await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"]))
    assert r.status_code == 200, r.text
    aid = await account_id(client, headers)
    # The resident renews their ID card: the registry now holds Biden's photo for this number.
    async with sessionmaker()() as s:
        account = await s.get(Account, aid)
        assert account is not None and account.id_number_hash
        rec = (
            await s.exec(
                select(PopulationRecord).where(PopulationRecord.id_number_hash == account.id_number_hash)
            )
        ).one()
        rec.photo_enc = encrypt_bytes(face_bytes("biden_1.jpg"), aad="id_photo")
        s.add(rec)
        await s.commit()
    c = await challenge(client, headers)
    problem(
        await upload(client, headers, c["challenge_id"], challenge_frames(motion_frames, c["steps"])),
        422,
        "identity.face_mismatch",
    )
    async with sessionmaker()() as s:
        rows = (
            await s.exec(
                select(IdentityAttempt).where(
                    IdentityAttempt.account_id == aid, IdentityAttempt.kind == "face"
                )
            )
        ).all()
        later = max(rows, key=lambda a: a.created_at)
        assert later.data["reference_encoding_kept"] is False  # the kept encoding was of the old photo
        profile = (
            await s.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
        ).one()
        kept = stored_template(profile)
    # A failed check keeps nothing: the kept encoding is still the old photo's until a check passes.
    assert kept is not None and face_distance(kept, analysed("obama_3.jpg").encoding) < 1e-3
