"""throttle_counters: race-free failure counters for sign-in and upload-token throttles

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import collector.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "throttle_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("window_start", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_throttle_counters")),
    )
    with op.batch_alter_table("throttle_counters") as batch:
        batch.create_index(batch.f("ix_throttle_counters_window_start"), ["window_start"],
                           unique=False)


def downgrade():
    with op.batch_alter_table("throttle_counters") as batch:
        batch.drop_index(batch.f("ix_throttle_counters_window_start"))
    op.drop_table("throttle_counters")
