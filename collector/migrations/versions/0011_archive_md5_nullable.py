"""archives.md5 may be NULL: computed in the background after the upload of an archive
over 4 MiB (collector/archives/checksums.py); existing archives keep theirs

Revision ID: 0011
Revises: 0010
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_NOT_NULL = re.compile(r"(\bmd5 VARCHAR\(32\)) NOT NULL")


def _set_sqlite_md5_clause(connection, old, new):
    """SQLite cannot alter a column, and batch mode's rebuild (create, copy, DROP TABLE,
    rename) would fire ON DELETE CASCADE on archive_indexes and archive_members and SET
    NULL on tus_uploads, foreign keys being on (the pragma cannot be turned off inside
    the migration's transaction). A NOT NULL only is dropped or added: SQLite's
    documented procedure rewrites the table's SQL in the schema and bumps its version
    (https://www.sqlite.org/lang_altertable.html, "otheralter")."""
    sql = connection.execute(sa.text(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'archives'")).scalar_one()
    changed, count = re.subn(old, new, sql)
    if count != 1:
        raise RuntimeError("archives.md5: unexpected table definition")
    version = connection.execute(sa.text("PRAGMA schema_version")).scalar_one()
    connection.execute(sa.text("PRAGMA writable_schema = ON"))
    connection.execute(sa.text(
        "UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'archives'"),
        {"sql": changed})
    connection.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    connection.execute(sa.text("PRAGMA writable_schema = OFF"))


def upgrade():
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        _set_sqlite_md5_clause(connection, _NOT_NULL, r"\1")
    else:
        op.alter_column("archives", "md5", existing_type=sa.String(length=32), nullable=True)


def downgrade():
    # An md5 never computed is left empty: the older code reads a string.
    op.execute("UPDATE archives SET md5 = '' WHERE md5 IS NULL")
    connection = op.get_bind()
    if connection.dialect.name == "sqlite":
        _set_sqlite_md5_clause(connection, re.compile(r"(\bmd5 VARCHAR\(32\))(?= *,)"),
                               r"\1 NOT NULL")
    else:
        op.alter_column("archives", "md5", existing_type=sa.String(length=32), nullable=False)
