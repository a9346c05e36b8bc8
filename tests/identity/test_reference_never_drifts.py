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
from identity_api_helpers import (
    GENUINE_CLIP,
    GENUINE_PHOTO,
    account_id,
    attempts,
    challenge,
    genuine_resident,
    problem,
    reach_l3,
    still_of,
    upload_clip,
    video_bytes,
)
from identity_helpers import face_bytes
from sqlmodel import select

from app_api.core.crypto import decrypt_str
from app_api.core.db import sessionmaker
from app_api.platform.audit.models import AuditEvent
from identity.face.engine import face_distance
from identity.face_data import stored_template
from identity.models import IdentityAttempt, IdentityFaceProfile

# What the impostor uploads: a real clip of another GRID person (person 1, blinking at frames 42-46
# and 50-53), a live track that does the blink: only the comparison can refuse it. The resident's
# registry photo is GRID person 3 from one recording, the passed capture person 3 from another:
# the recorded distance tells which of the two was the reference.
IMPOSTOR = "grid/bbaf2n.mpg"


def clip_encoding(rel: str, frame: int) -> list[float]:
    """The encoding the capture analysis computes for one frame of a fixture clip (same pixels,
    same detector settings as the pool's capture job)."""
    from identity_api_helpers import _decoded

    from identity.face.capture import Capture, Frame, analyse_frames

    faces = analyse_frames(Capture([Frame(_decoded(rel)[frame][0], 0.0)]), upsample=0)
    assert faces[0].encoding
    return list(faces[0].encoding)


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
    fix_steps: Callable[[list[str]], None],
    session: Any,
) -> None:
    from identity_helpers import LIMITS

    from identity.face.engine import analyse_image

    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
    aid = await account_id(client, headers)
    (passed,) = [a for a in await attempts(session, aid) if a.kind == "face"]
    assert passed.outcome == "passed" and passed.data["reference"] == "registry_photo"
    registry = analyse_image(still_of(*GENUINE_PHOTO), LIMITS).encoding
    capture = clip_encoding(GENUINE_CLIP, passed.data["best_frame"])

    # What is kept is the registry photo's encoding, not the capture's.
    async with sessionmaker()() as s:
        profile = (
            await s.exec(select(IdentityFaceProfile).where(IdentityFaceProfile.account_id == aid))
        ).one()
        kept = stored_template(profile)
    assert kept is not None
    assert face_distance(kept, registry) < 1e-3
    assert face_distance(kept, capture) > 0.1

    # A different person's live capture, later: compared with the registry photo, and refused.
    c = await challenge(client, headers, purpose="loans.apply")
    r = await upload_clip(client, headers, c["challenge_id"], video_bytes(IMPOSTOR))
    problem(r, 422, "identity.face_mismatch")
    assert "step_up_token" not in r.text
    session.expunge_all()
    later = [a for a in await attempts(session, aid) if a.kind == "face"][-1]
    assert later.outcome == "failed" and later.purpose == "loans.apply"
    assert later.data["reference"] == "registry_photo" and later.data["reference_encoding_kept"] is True
    impostor = clip_encoding(IMPOSTOR, later.data["best_frame"])
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
        assert scores["distance"] == a.distance and scores["capture"]["continuity"]["micro_motion"] > 0
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
    fix_steps: Callable[[list[str]], None],
) -> None:
    """The kept encoding is used only while the registry holds the photo it came from."""
    from identity_helpers import LIMITS

    from app_api.core.crypto import encrypt_bytes
    from app_api.platform.accounts.models import Account
    from app_api.platform.datahub.models import PopulationRecord
    from identity.face.engine import analyse_image

    headers = await genuine_resident(client, login, person_factory)
    await reach_l3(client, headers, fix_steps)
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
    c = await challenge(client, headers)  # the fixed draw (blink) still holds
    problem(
        await upload_clip(client, headers, c["challenge_id"], video_bytes(GENUINE_CLIP)),
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
    registry = analyse_image(still_of(*GENUINE_PHOTO), LIMITS).encoding
    assert kept is not None and face_distance(kept, registry) < 1e-3
