"""fees through the payments package: the fee on applications and the fee payments

Revision ID: 8b3e5d2a41c7
Revises: 3f1c2a7d9b10
Create Date: 2026-12-03 13:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app_api.core.db

revision: str = "8b3e5d2a41c7"
down_revision: str | Sequence[str] | None = "3f1c2a7d9b10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fee_fen", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("fee_charge_at", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True)
        )
        batch_op.add_column(sa.Column("fee_due_at", app_api.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("fee_order_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_gov_services_application_fee_due_at"), ["fee_due_at"], unique=False
        )

    op.create_table(
        "gov_services_fee_payment",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("application_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("department", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("item_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("item_name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("application_number", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("order_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("out_trade_no", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("provider", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("amount_fen", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("paid_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("refund_no", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("refund_reason", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("refunded_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["gov_services_application.id"],
            name=op.f("fk_gov_services_fee_payment_application_id_gov_services_application"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gov_services_fee_payment")),
        sa.UniqueConstraint("order_id", name=op.f("uq_gov_services_fee_payment_order_id")),
        sa.UniqueConstraint("out_trade_no", name=op.f("uq_gov_services_fee_payment_out_trade_no")),
    )
    with op.batch_alter_table("gov_services_fee_payment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gov_services_fee_payment_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gov_services_fee_payment_department"), ["department"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_gov_services_fee_payment_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gov_services_fee_payment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_fee_payment_status"))
        batch_op.drop_index(batch_op.f("ix_gov_services_fee_payment_department"))
        batch_op.drop_index(batch_op.f("ix_gov_services_fee_payment_application_id"))
    op.drop_table("gov_services_fee_payment")

    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_application_fee_due_at"))
        batch_op.drop_column("fee_order_id")
        batch_op.drop_column("fee_due_at")
        batch_op.drop_column("fee_charge_at")
        batch_op.drop_column("fee_fen")
