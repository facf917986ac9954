"""audit_events: the append-only audit log

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

import collector.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("time", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=150), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("ticket_number", sa.BigInteger(), nullable=True),
        sa.Column("archive_id", sa.Integer(), nullable=True),
        sa.Column("client_address", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_time_id", "audit_events", ["time", "id"])
    op.create_index("ix_audit_events_ticket_id_time", "audit_events", ["ticket_id", "time"])
    op.create_index("ix_audit_events_actor_name_time", "audit_events", ["actor_name", "time"])
    op.create_index("ix_audit_events_action_time", "audit_events", ["action", "time"])


def downgrade():
    op.drop_table("audit_events")
