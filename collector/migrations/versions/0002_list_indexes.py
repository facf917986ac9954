"""index (time_create, id) for the paged, newest-first lists

Revision ID: 0002
Revises: 0001
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    for table in ("tickets", "archives"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(f"ix_{table}_time_create")
            batch_op.create_index(f"ix_{table}_time_create_id", ["time_create", "id"])


def downgrade():
    for table in ("tickets", "archives"):
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(f"ix_{table}_time_create_id")
            batch_op.create_index(f"ix_{table}_time_create", ["time_create"])
