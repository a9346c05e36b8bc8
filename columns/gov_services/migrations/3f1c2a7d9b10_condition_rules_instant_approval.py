"""condition rules and instant approval

Revision ID: 3f1c2a7d9b10
Revises: c7c9c9bd3d22
Create Date: 2026-12-03 13:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app_api.core.db

revision: str = "3f1c2a7d9b10"
down_revision: str | Sequence[str] | None = "c7c9c9bd3d22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gov_services_item_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rules", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column("instant_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("instant_sample_percent", sa.Integer(), nullable=False, server_default="10")
        )

    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule_results", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("instant", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(
            sa.Column("instant_sampled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("instant_reviewed_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("instant_reviewed_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_gov_services_application_instant_sampled"), ["instant_sampled"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_application_instant_sampled"))
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("instant_reviewed_by")
        batch_op.drop_column("instant_reviewed_at")
        batch_op.drop_column("instant_sampled")
        batch_op.drop_column("instant")
        batch_op.drop_column("rule_results")

    with op.batch_alter_table("gov_services_item_version", schema=None) as batch_op:
        batch_op.drop_column("instant_sample_percent")
        batch_op.drop_column("instant_approval")
        batch_op.drop_column("rules")
