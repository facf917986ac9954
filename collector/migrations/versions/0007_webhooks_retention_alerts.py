"""webhooks (outbox, attempts), retention and legal hold columns, storage alert state

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

import collector.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("time_create", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["platform_id"], ["platforms.id"],
                                name=op.f("fk_webhooks_platform_id_platforms"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhooks")),
    )
    op.create_index("ix_webhooks_platform_id", "webhooks", ["platform_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("claimed_until", collector.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.Column("delivered_at", collector.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("time_create", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["webhook_id"], ["webhooks.id"],
                                name=op.f("fk_webhook_deliveries_webhook_id_webhooks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index("ix_webhook_deliveries_state_next", "webhook_deliveries",
                    ["state", "next_attempt_at"])
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("time", collector.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"],
                                name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index("ix_webhook_attempts_delivery_id", "webhook_attempts", ["delivery_id"])
    op.create_table(
        "storage_alert_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("low", sa.Boolean(), nullable=False),
        sa.Column("free", sa.BigInteger(), nullable=False),
        sa.Column("changed_at", collector.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_alert_state")),
    )
    op.execute("INSERT INTO storage_alert_state (id, low, free) VALUES (1, false, 0)")
    with op.batch_alter_table("platforms") as batch:
        batch.add_column(sa.Column("retention_resolved_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("retention_max_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("legal_hold", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("resolved_at", collector.db.UTCDateTime(timezone=True),
                                   nullable=True))
    # A ticket resolved before this migration: its last change is the best guess.
    op.execute("UPDATE tickets SET resolved_at = time_update WHERE resolved")


def downgrade():
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("legal_hold")
    with op.batch_alter_table("platforms") as batch:
        batch.drop_column("retention_max_days")
        batch.drop_column("retention_resolved_days")
    op.drop_table("storage_alert_state")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhooks")
