"""The migrations build exactly the schema the models describe, on both backends."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from collector.db import Base


@pytest.mark.sqlite  # the migrations of each engine
def test_migrations_match_the_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def _alembic(engine, action, revision):
    from alembic import command
    from alembic.config import Config

    from collector.cli import ALEMBIC_DIR

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, action)(config, revision)


def test_md5_becomes_nullable_and_sqlite_keeps_every_row(tmp_path):
    """0011 on SQLite: no table rebuild, whose DROP TABLE would cascade to the archives'
    member indexes (foreign keys are on); the md5s already there stay."""
    from sqlalchemy import text

    from collector.db import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    _alembic(engine, "upgrade", "0010")
    when = "'2026-01-01 00:00:00'"
    with engine.begin() as connection:
        for statement in (
                "INSERT INTO platforms (id, name, pretty_name, restricted) "
                "VALUES (1, 'vm6', 'VM6', 0)",
                "INSERT INTO tickets (id, number, platform_id, token, token_digest, attempts, "
                "resolved, note, expires_at, time_create, time_update) "
                f"VALUES (1, 7, 1, 't', 'd', 1, 0, '', {when}, {when}, {when})",
                "INSERT INTO archives (id, ticket_id, storage_key, name, size, md5, sha256, "
                f"time_create, time_update) VALUES (1, 1, 'k1', 'a', 3, '{'a' * 32}', "
                f"'{'b' * 64}', {when}, {when})",
                "INSERT INTO archive_indexes (archive_id, state, claim, format, error, "
                f"members, total_size, heartbeat_at, time_create) VALUES (1, 'ready', '', "
                f"'tar', '', 0, 0, {when}, {when})"):
            connection.execute(text(statement))
    _alembic(engine, "upgrade", "head")
    new_row = ("INSERT INTO archives (id, ticket_id, storage_key, name, size, md5, sha256, "
               f"time_create, time_update) VALUES (2, 1, 'k2', 'b', 3, NULL, '{'c' * 64}', "
               f"{when}, {when})")
    with engine.begin() as connection:
        connection.execute(text(new_row))
        assert connection.execute(text("SELECT id, md5 FROM archives ORDER BY id")).all() \
            == [(1, "a" * 32), (2, None)]
        assert connection.execute(text("SELECT count(*) FROM archive_indexes")).scalar() == 1
        assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    _alembic(engine, "downgrade", "0010")
    with engine.begin() as connection:
        assert connection.execute(text("SELECT id, md5 FROM archives ORDER BY id")).all() \
            == [(1, "a" * 32), (2, "")]
        with pytest.raises(Exception, match="NOT NULL"):
            connection.execute(text(new_row.replace("(2, 1, 'k2'", "(3, 1, 'k3'")))
    engine.dispose()
