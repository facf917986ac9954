"""users.session_epoch: signing out ends the user's sessions on the server;
tickets.token_digest: upload tokens are looked up by their sha256

Revision ID: 0008
Revises: 0007
"""
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("token_digest", sa.String(length=64), nullable=True))
    tickets = sa.table("tickets", sa.column("id", sa.Integer),
                       sa.column("token", sa.String), sa.column("token_digest", sa.String))
    connection = op.get_bind()
    rows = connection.execute(sa.select(tickets.c.id, tickets.c.token)).all()
    for ticket_id, token in rows:
        connection.execute(tickets.update().where(tickets.c.id == ticket_id).values(
            token_digest=hashlib.sha256(token.encode()).hexdigest()))
    with op.batch_alter_table("tickets") as batch:
        batch.alter_column("token_digest", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint("uq_tickets_token_digest", ["token_digest"])


def downgrade():
    with op.batch_alter_table("tickets") as batch:
        batch.drop_constraint("uq_tickets_token_digest", type_="unique")
        batch.drop_column("token_digest")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_epoch")
