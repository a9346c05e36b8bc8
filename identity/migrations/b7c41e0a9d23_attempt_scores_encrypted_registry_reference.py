"""attempt scores encrypted; the face reference is the registry photo only

The measured scores of a face check (distance or similarity, liveness figures) move from plain
columns and the attempt's JSON into ``scores_enc`` (AES-GCM, app_api.core.crypto, AAD
``identity_attempt_scores:<id>``). Kept face templates are deleted: before this revision they were
the encoding of the latest capture, which the next check compared with; from now on the template is
the registry photo's encoding, written again on the resident's next passed check.

Revision ID: b7c41e0a9d23
Revises: 20c8ffaf8218
Create Date: 2026-12-03 16:05:00.000000
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "b7c41e0a9d23"
down_revision: str | Sequence[str] | None = "20c8ffaf8218"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Keys of the attempt's JSON that are measurements (kept encrypted from now on).
_SCORE_KEYS = (
    "distance",
    "similarity",
    "max_frame_distance",
    "baseline_ear",
    "min_ear",
    "yaw_range",
    "step_frames",
)


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


def upgrade() -> None:
    from app_api.core.crypto import encrypt_str

    with op.batch_alter_table("identity_attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scores_enc", sa.LargeBinary(), nullable=True))

    bind = op.get_bind()
    attempt = sa.table(
        "identity_attempt",
        sa.column("id", sa.String),
        sa.column("distance", sa.Float),
        sa.column("similarity", sa.Float),
        sa.column("data", sa.JSON),
        sa.column("scores_enc", sa.LargeBinary),
    )
    rows = bind.execute(
        sa.select(attempt.c.id, attempt.c.distance, attempt.c.similarity, attempt.c.data).where(
            sa.or_(attempt.c.distance.is_not(None), attempt.c.similarity.is_not(None))
        )
    ).all()
    for row in rows:
        data = _as_dict(row.data)
        scores = {k: data.pop(k) for k in _SCORE_KEYS if k in data}
        for k in ("distance", "similarity"):
            if getattr(row, k) is not None:
                scores[k] = getattr(row, k)
        sealed = encrypt_str(json.dumps(scores, ensure_ascii=False), aad=f"identity_attempt_scores:{row.id}")
        bind.execute(attempt.update().where(attempt.c.id == row.id).values(scores_enc=sealed, data=data))

    with op.batch_alter_table("identity_attempt", schema=None) as batch_op:
        batch_op.drop_column("similarity")
        batch_op.drop_column("distance")

    op.execute("UPDATE identity_face_profile SET template_enc = NULL")


def downgrade() -> None:
    # The distance and similarity go back to their plain columns; the other figures are dropped with
    # ``scores_enc``. The deleted capture templates are not restored.
    from app_api.core.crypto import decrypt_str

    with op.batch_alter_table("identity_attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("distance", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("similarity", sa.Float(), nullable=True))
    bind = op.get_bind()
    attempt = sa.table(
        "identity_attempt",
        sa.column("id", sa.String),
        sa.column("distance", sa.Float),
        sa.column("similarity", sa.Float),
        sa.column("scores_enc", sa.LargeBinary),
    )
    rows = bind.execute(
        sa.select(attempt.c.id, attempt.c.scores_enc).where(attempt.c.scores_enc.is_not(None))
    ).all()
    for row in rows:
        scores = json.loads(decrypt_str(bytes(row.scores_enc), aad=f"identity_attempt_scores:{row.id}"))
        bind.execute(
            attempt.update()
            .where(attempt.c.id == row.id)
            .values(distance=scores.get("distance"), similarity=scores.get("similarity"))
        )
    with op.batch_alter_table("identity_attempt", schema=None) as batch_op:
        batch_op.drop_column("scores_enc")
