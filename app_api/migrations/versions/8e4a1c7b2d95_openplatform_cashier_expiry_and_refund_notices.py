"""openplatform: cashier orders expire, refund completions are recorded for the column's notice

Revision ID: 8e4a1c7b2d95
Revises: 3b7c2e9d4f10
Create Date: 2026-12-04 03:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
import app_api.core.db

revision: str = "8e4a1c7b2d95"
down_revision: str | Sequence[str] | None = "3b7c2e9d4f10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("app_cashier_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("closed_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.create_index("ix_app_cashier_order_open", ["status", "expires_at"], unique=False)
    with op.batch_alter_table("app_cashier_refund", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settled_status", S(length=20), nullable=True))
        batch_op.add_column(sa.Column("settled_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_app_cashier_refund_settled_at"), ["settled_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("app_cashier_refund", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_cashier_refund_settled_at"))
        batch_op.drop_column("settled_at")
        batch_op.drop_column("settled_status")
    with op.batch_alter_table("app_cashier_order", schema=None) as batch_op:
        batch_op.drop_index("ix_app_cashier_order_open")
        batch_op.drop_column("closed_at")
        batch_op.drop_column("expires_at")
