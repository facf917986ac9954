"""tus_uploads: resumable uploads in progress

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

import collector.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "tus_uploads",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("metadata_header", sa.String(length=4096), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("filetype", sa.String(length=255), nullable=False),
        sa.Column("concat", sa.String(length=8), nullable=True),
        sa.Column("parts", sa.String(length=4096), nullable=False),
        sa.Column("holds_attempt", sa.Boolean(), nullable=False),
        sa.Column("storage_key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", collector.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("archive_id", sa.Integer(), nullable=True),
        sa.Column("time_create", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("time_update", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"],
                                name=op.f("fk_tus_uploads_ticket_id_tickets"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["archive_id"], ["archives.id"],
                                name=op.f("fk_tus_uploads_archive_id_archives"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tus_uploads")),
        sa.UniqueConstraint("storage_key", name=op.f("uq_tus_uploads_storage_key")),
    )
    with op.batch_alter_table("tus_uploads") as batch_op:
        batch_op.create_index(batch_op.f("ix_tus_uploads_ticket_id"), ["ticket_id"],
                              unique=False)
        batch_op.create_index(batch_op.f("ix_tus_uploads_expires_at"), ["expires_at"],
                              unique=False)


def downgrade():
    with op.batch_alter_table("tus_uploads") as batch_op:
        batch_op.drop_index(batch_op.f("ix_tus_uploads_expires_at"))
        batch_op.drop_index(batch_op.f("ix_tus_uploads_ticket_id"))
    op.drop_table("tus_uploads")
