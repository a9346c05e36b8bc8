"""Identity tables: every verification attempt, and the face data a resident agreed to keep."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from app_api.core.crypto import decrypt_str, encrypt_str, encrypted_column
from app_api.core.db import created_at_field, new_id


class IdentityAttempt(SQLModel, table=True):
    """One attempt to prove identity: real-name (L2), face (L3 or step-up), or an agent's attestation.

    Kept for the resident's history and for review; never holds images, templates or raw ID numbers.
    """

    __tablename__ = "identity_attempt"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", index=True, max_length=32)
    kind: str = Field(max_length=30)  # real_name | face | agent_attestation
    purpose: str | None = Field(default=None, max_length=60)
    outcome: str = Field(max_length=10)  # passed | failed | refused
    code: str | None = Field(default=None, max_length=60)
    verifier: str | None = Field(default=None, max_length=20)
    # The threshold the check applied (a setting, not a measurement).
    tolerance: float | None = None
    # What a face check measured (distance or similarity to the registry photo, liveness figures),
    # JSON encrypted under this row's id: kept for review, unreadable from the raw table.
    scores_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("identity_attempt_scores:{id}", form="json"),
    )
    # The agent who attested in person, and their liaison station.
    actor_id: str | None = Field(default=None, max_length=32)
    station_id: str | None = Field(default=None, max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    created_at: dt.datetime = created_at_field()

    @property
    def scores(self) -> dict[str, Any]:
        """The measured scores, decrypted ({} when the attempt measured nothing)."""
        if self.scores_enc is None:
            return {}
        out: dict[str, Any] = json.loads(decrypt_str(self.scores_enc, aad=scores_aad(self.id)))
        return out

    @property
    def distance(self) -> float | None:
        value = self.scores.get("distance")
        return None if value is None else float(value)

    @property
    def similarity(self) -> float | None:
        value = self.scores.get("similarity")
        return None if value is None else float(value)


def scores_aad(attempt_id: str) -> str:
    return f"identity_attempt_scores:{attempt_id}"


def seal_scores(attempt_id: str, scores: dict[str, Any]) -> bytes:
    """``scores`` as the encrypted value of ``IdentityAttempt.scores_enc`` of the attempt ``attempt_id``."""
    return encrypt_str(json.dumps(scores, ensure_ascii=False, default=str), aad=scores_aad(attempt_id))


class IdentityFaceProfile(SQLModel, table=True):
    """Face data kept under the resident's face consent, encrypted (AES-GCM, app_api.core.crypto).

    Deleted when the resident deletes their face data or withdraws the consent.
    """

    __tablename__ = "identity_face_profile"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="app_account.id", unique=True, max_length=32)
    consent_id: str = Field(max_length=32)
    # The registry ID photo's face encoding (float32 x 128), encrypted, computed from ``id_photo_enc``
    # and used only while the registry still holds that same photo. Never a capture's encoding: a
    # reference that followed the captures would, after one spoof, be the attacker's face.
    # None when a remote service did the comparison.
    template_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column(
            "face_template:{account_id}",
            form="bytes",
            not_exported="人脸特征模板属于生物识别数据，仅用于身份核验，不予导出",
        ),
    )
    id_photo_enc: bytes | None = Field(
        default=None,
        sa_type=sa.LargeBinary,
        sa_column_kwargs=encrypted_column("id_photo:{account_id}", form="bytes"),
    )
    verifier: str = Field(max_length=20)
    created_at: dt.datetime = created_at_field()
    updated_at: dt.datetime = created_at_field()
