"""sweep indexes: paid orders whose column was never told, refunds not settled

Revision ID: 5d0b1e9c3a47
Revises: 7af2931de8e7
Create Date: 2026-12-03 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = "5d0b1e9c3a47"
down_revision: str | Sequence[str] | None = "7af2931de8e7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNNOTIFIED = "column_notified_at IS NULL AND paid_at IS NOT NULL"
OPEN = "status IN ('requested', 'processing')"


def upgrade() -> None:
    # Partial indexes: only the rows the sweeps look for (payments.sweeps), so the every-minute
    # queries stay a few index pages however long the ledger grows.
    with op.batch_alter_table("payments_order", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payments_order_unnotified",
            ["paid_at"],
            unique=False,
            postgresql_where=sa.text(UNNOTIFIED),
            sqlite_where=sa.text(UNNOTIFIED),
        )
    with op.batch_alter_table("payments_refund", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payments_refund_open",
            ["created_at"],
            unique=False,
            postgresql_where=sa.text(OPEN),
            sqlite_where=sa.text(OPEN),
        )


def downgrade() -> None:
    with op.batch_alter_table("payments_refund", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_refund_open")
    with op.batch_alter_table("payments_order", schema=None) as batch_op:
        batch_op.drop_index("ix_payments_order_unnotified")
