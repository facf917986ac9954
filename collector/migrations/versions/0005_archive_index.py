"""archive_indexes, archive_members: the member index of archives

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

import collector.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "archive_indexes",
        sa.Column("archive_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("claim", sa.String(length=32), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("total_size", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("time_create", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["archive_id"], ["archives.id"],
                                name=op.f("fk_archive_indexes_archive_id_archives"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("archive_id", name=op.f("pk_archive_indexes")),
    )
    op.create_table(
        "archive_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("archive_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime", collector.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("compression", sa.String(length=4), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["archive_id"], ["archives.id"],
                                name=op.f("fk_archive_members_archive_id_archives"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_members")),
    )
    with op.batch_alter_table("archive_members") as batch_op:
        batch_op.create_index("ix_archive_members_archive_id_path", ["archive_id", "path"],
                              unique=True)


def downgrade():
    with op.batch_alter_table("archive_members") as batch_op:
        batch_op.drop_index("ix_archive_members_archive_id_path")
    op.drop_table("archive_members")
    op.drop_table("archive_indexes")
