"""tus_uploads.segment_size: an upload whose bytes are S3 segment objects (not a local file)

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("tus_uploads") as batch:
        batch.add_column(sa.Column("segment_size", sa.BigInteger(), nullable=True))


def downgrade():
    with op.batch_alter_table("tus_uploads") as batch:
        batch.drop_column("segment_size")
