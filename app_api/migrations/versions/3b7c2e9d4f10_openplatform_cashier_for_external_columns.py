"""openplatform: the cashier for external columns

A column's cashier registration, its orders and refunds, the nonces of its signed requests and the
notifications its server is owed.

Revision ID: 3b7c2e9d4f10
Revises: 5c5e876669c5
Create Date: 2026-12-03 19:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
import app_api.core.db

revision: str = "3b7c2e9d4f10"
down_revision: str | Sequence[str] | None = "5c5e876669c5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "app_cashier_account",
        sa.Column("column_id", S(length=32), nullable=False),
        sa.Column("notify_url", S(length=500), nullable=False),
        sa.Column("sub_accounts", sa.JSON(), nullable=False),
        sa.Column("secret_enc", sa.LargeBinary(), nullable=False),
        sa.Column("created_by", S(length=32), nullable=False),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["app_external_column.id"],
            name=op.f("fk_app_cashier_account_column_id_app_external_column"),
        ),
        sa.PrimaryKeyConstraint("column_id", name=op.f("pk_app_cashier_account")),
    )
    op.create_table(
        "app_cashier_nonce",
        sa.Column("column_id", S(length=32), nullable=False),
        sa.Column("nonce", S(length=64), nullable=False),
        sa.Column("seen_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("column_id", "nonce", name=op.f("pk_app_cashier_nonce")),
    )
    op.create_table(
        "app_cashier_order",
        sa.Column("id", S(length=32), nullable=False),
        sa.Column("column_id", S(length=32), nullable=False),
        sa.Column("out_order_no", S(length=64), nullable=False),
        sa.Column("request_hash", S(length=64), nullable=False),
        sa.Column("account_id", S(length=32), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("description", S(length=128), nullable=False),
        sa.Column("sub_account", S(length=64), nullable=False),
        sa.Column("status", S(length=20), nullable=False),
        sa.Column("payment_order_id", S(length=32), nullable=True),
        sa.Column("out_trade_no", S(length=32), nullable=True),
        sa.Column("provider", S(length=20), nullable=True),
        sa.Column("refunded_fen", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["app_account.id"], name=op.f("fk_app_cashier_order_account_id_app_account")
        ),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["app_external_column.id"],
            name=op.f("fk_app_cashier_order_column_id_app_external_column"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_cashier_order")),
        sa.UniqueConstraint("column_id", "out_order_no", name=op.f("uq_app_cashier_order_column_id")),
    )
    with op.batch_alter_table("app_cashier_order", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_cashier_order_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_app_cashier_order_column_id"), ["column_id"], unique=False)
        batch_op.create_index("ix_app_cashier_order_paid", ["paid_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_app_cashier_order_payment_order_id"), ["payment_order_id"], unique=False
        )
    op.create_table(
        "app_cashier_refund",
        sa.Column("id", S(length=32), nullable=False),
        sa.Column("column_id", S(length=32), nullable=False),
        sa.Column("order_id", S(length=32), nullable=False),
        sa.Column("out_refund_no", S(length=64), nullable=False),
        sa.Column("amount_fen", sa.BigInteger(), nullable=False),
        sa.Column("reason", S(length=80), nullable=True),
        sa.Column("payment_refund_id", S(length=32), nullable=False),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["app_external_column.id"],
            name=op.f("fk_app_cashier_refund_column_id_app_external_column"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["app_cashier_order.id"],
            name=op.f("fk_app_cashier_refund_order_id_app_cashier_order"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_cashier_refund")),
        sa.UniqueConstraint("column_id", "out_refund_no", name=op.f("uq_app_cashier_refund_column_id")),
    )
    with op.batch_alter_table("app_cashier_refund", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_cashier_refund_order_id"), ["order_id"], unique=False)
    op.create_table(
        "app_cashier_notice",
        sa.Column("id", S(length=32), nullable=False),
        sa.Column("column_id", S(length=32), nullable=False),
        sa.Column("order_id", S(length=32), nullable=False),
        sa.Column("event", S(length=30), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", S(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", S(length=300), nullable=True),
        sa.Column("last_attempt_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["app_external_column.id"],
            name=op.f("fk_app_cashier_notice_column_id_app_external_column"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["app_cashier_order.id"],
            name=op.f("fk_app_cashier_notice_order_id_app_cashier_order"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_cashier_notice")),
        sa.UniqueConstraint("order_id", "event", name=op.f("uq_app_cashier_notice_order_id")),
    )
    with op.batch_alter_table("app_cashier_notice", schema=None) as batch_op:
        batch_op.create_index("ix_app_cashier_notice_status", ["column_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_table("app_cashier_notice")
    op.drop_table("app_cashier_refund")
    op.drop_table("app_cashier_order")
    op.drop_table("app_cashier_nonce")
    op.drop_table("app_cashier_account")
