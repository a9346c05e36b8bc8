"""datahub access log: the actor (kind, organisation, mandate, job) and the application

Revision ID: 5c1e9a7d3b20
Revises: 49475f4e84a5
Create Date: 2026-12-03 13:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "5c1e9a7d3b20"
down_revision: str | Sequence[str] | None = "49475f4e84a5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("app_datahub_access", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("actor_kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("actor_org", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column("mandate_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("job", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True))
        batch_op.add_column(
            sa.Column("application_ref", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("app_datahub_access", schema=None) as batch_op:
        batch_op.drop_column("application_ref")
        batch_op.drop_column("job")
        batch_op.drop_column("mandate_id")
        batch_op.drop_column("actor_org")
        batch_op.drop_column("actor_kind")
