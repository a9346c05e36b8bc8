"""life events (一件事): bundles, their applications, uploads and timeline; applications point at their bundle

Revision ID: 586a7ded6c48
Revises: 8b3e5d2a41c7
Create Date: 2026-12-03 13:27:51.305330
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import app_api.core.db

revision: str = "586a7ded6c48"
down_revision: str | Sequence[str] | None = "8b3e5d2a41c7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gov_services_bundle",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("summary", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("item_codes", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("promised_days", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gov_services_bundle")),
        sa.UniqueConstraint("code", name=op.f("uq_gov_services_bundle_code")),
    )
    op.create_table(
        "gov_services_bundle_application",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=24), nullable=False),
        sa.Column("client_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("applicant_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("bundle_code", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("bundle_name", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("form_enc", sa.LargeBinary(), nullable=True),
        sa.Column("consents", sa.JSON(), nullable=False),
        sa.Column("ecerts", sa.JSON(), nullable=False),
        sa.Column("delivery", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("address_enc", sa.LargeBinary(), nullable=True),
        sa.Column("tracking_no", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.Column("submitted_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("completed_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("delivered_at", app_api.core.db.UTCDateTime(), nullable=True),
        sa.Column("updated_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gov_services_bundle_application")),
        sa.UniqueConstraint(
            "applicant_id", "client_key", name=op.f("uq_gov_services_bundle_application_applicant_id")
        ),
        sa.UniqueConstraint("number", name=op.f("uq_gov_services_bundle_application_number")),
    )
    with op.batch_alter_table("gov_services_bundle_application", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gov_services_bundle_application_applicant_id"), ["applicant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gov_services_bundle_application_bundle_code"), ["bundle_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_gov_services_bundle_application_status"), ["status"], unique=False
        )

    op.create_table(
        "gov_services_bundle_event",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("bundle_application_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("actor_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("actor_role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_application_id"],
            ["gov_services_bundle_application.id"],
            name=op.f("fk_gov_services_bundle_event_bundle_application_id_gov_services_bundle_application"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gov_services_bundle_event")),
    )
    with op.batch_alter_table("gov_services_bundle_event", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gov_services_bundle_event_bundle_application_id"),
            ["bundle_application_id"],
            unique=False,
        )

    op.create_table(
        "gov_services_bundle_upload",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("bundle_application_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("owner_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("material", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("storage_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", app_api.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bundle_application_id"],
            ["gov_services_bundle_application.id"],
            name=op.f("fk_gov_services_bundle_upload_bundle_application_id_gov_services_bundle_application"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gov_services_bundle_upload")),
    )
    with op.batch_alter_table("gov_services_bundle_upload", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_gov_services_bundle_upload_bundle_application_id"),
            ["bundle_application_id"],
            unique=False,
        )

    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bundle_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_gov_services_application_bundle_id"), ["bundle_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_gov_services_application_bundle_id_gov_services_bundle_application"),
            "gov_services_bundle_application",
            ["bundle_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("gov_services_application", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_gov_services_application_bundle_id_gov_services_bundle_application"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_gov_services_application_bundle_id"))
        batch_op.drop_column("bundle_id")

    with op.batch_alter_table("gov_services_bundle_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_bundle_upload_bundle_application_id"))

    op.drop_table("gov_services_bundle_upload")
    with op.batch_alter_table("gov_services_bundle_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_bundle_event_bundle_application_id"))

    op.drop_table("gov_services_bundle_event")
    with op.batch_alter_table("gov_services_bundle_application", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gov_services_bundle_application_status"))
        batch_op.drop_index(batch_op.f("ix_gov_services_bundle_application_bundle_code"))
        batch_op.drop_index(batch_op.f("ix_gov_services_bundle_application_applicant_id"))

    op.drop_table("gov_services_bundle_application")
    op.drop_table("gov_services_bundle")
