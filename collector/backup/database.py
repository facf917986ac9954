"""The database half of a backup: a consistent copy of each engine, its archive rows and
schema revision read from that same snapshot, and the copy put back into an empty database.

SQLite: the online backup API copies every page in one step, inside one read transaction,
so the copy is consistent although the server keeps writing (WAL mode; copying the file
itself is not). PostgreSQL: ``pg_dump`` in custom format, told to use a snapshot exported
by a transaction of ours (``pg_export_snapshot``), in which we read the archive rows: the
dump and the list of files to copy are the same moment.
"""

import contextlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy import bindparam, exc, inspect, text
from sqlalchemy.engine import make_url

from collector.db import make_engine

SQLITE_FILE = "database.sqlite3"
PGDUMP_FILE = "database.pgdump"

_ROWS = "SELECT id, storage_key, size, sha256 FROM archives ORDER BY id"
_REVISION = "SELECT version_num FROM alembic_version"


class BackupError(Exception):
    """A refusal or failure, said in one line; nothing was overwritten."""


def engine_name(db_url):
    return make_url(db_url).get_backend_name()


def sqlite_path(db_url):
    return Path(make_url(db_url).database)


def _libpq(db_url):
    """(URL without the password, environment with it): a password on a command line
    can be read by every user of the machine (``ps``)."""
    url = make_url(db_url).set(drivername="postgresql")
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
        url = url.set(password=None)
    return url.render_as_string(hide_password=False), env


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found on PATH: install the PostgreSQL client "
                          "programs (the same major version as the server, or newer)")
    return path


def _run(command, env, what):
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else result.returncode}")


@contextlib.contextmanager
def _connect(db_url, begin=False):
    """A connection of an engine of its own (disposed after); a database that cannot be
    reached is a ``BackupError``, said in one line."""
    engine = make_engine(db_url)
    try:
        with engine.begin() if begin else engine.connect() as connection:
            yield connection
    except exc.OperationalError as error:
        message = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise BackupError(f"cannot use the database: {message}") from None
    finally:
        engine.dispose()


class Snapshot:
    """What a database copy holds: the archive rows ``(id, key, size, sha256)`` and the
    schema revision, and the copy's file name in the backup directory."""

    def __init__(self, file, rows, revision):
        self.file, self.rows, self.revision = file, rows, revision


def copy_database(db_url, dest):
    """Copy the database into the directory ``dest``; returns its ``Snapshot``."""
    if engine_name(db_url) == "sqlite":
        return _copy_sqlite(db_url, dest)
    return _copy_postgresql(db_url, dest)


def _copy_sqlite(db_url, dest):
    source_path = sqlite_path(db_url)
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}")
    target = dest / SQLITE_FILE
    source = sqlite3.connect(source_path, timeout=30)
    try:
        copy = sqlite3.connect(target)
        try:
            # pages=-1 (the default): every page in one step, one consistent read.
            source.backup(copy)
            # One self-contained file (the source's WAL mode came with its pages).
            copy.execute("PRAGMA journal_mode=DELETE")
            rows = [tuple(row) for row in copy.execute(_ROWS)]
            revision = copy.execute(_REVISION).fetchone()[0]
        finally:
            copy.close()
    finally:
        source.close()
    return Snapshot(SQLITE_FILE, rows, revision)


def _copy_postgresql(db_url, dest):
    pg_dump = _tool("pg_dump")
    url, env = _libpq(db_url)
    with _connect(db_url) as connection:
        connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            snapshot = connection.scalar(text("SELECT pg_export_snapshot()"))
            rows = [tuple(row) for row in connection.execute(text(_ROWS))]
            revision = connection.scalar(text(_REVISION))
            # The snapshot lives as long as this transaction: pg_dump runs inside it.
            _run([pg_dump, "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", f"--file={dest / PGDUMP_FILE}",
                  f"--dbname={url}"], env, "pg_dump")
    return Snapshot(PGDUMP_FILE, rows, revision)


def read_copy(path, engine):
    """The archive rows and the revision of a database copy made by ``copy_database``
    (SQLite only; a dump is read once restored)."""
    if engine != "sqlite":
        return None
    try:
        copy = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        try:
            return Snapshot(path.name, [tuple(row) for row in copy.execute(_ROWS)],
                            copy.execute(_REVISION).fetchone()[0])
        finally:
            copy.close()
    except sqlite3.Error as error:
        raise BackupError(f"{path}: not a readable database copy ({error})") from None


def is_empty(db_url):
    """Whether the database has no table at all (an SQLite file that does not exist or
    is empty counts as empty)."""
    if engine_name(db_url) == "sqlite":
        path = sqlite_path(db_url)
        if not path.exists() or path.stat().st_size == 0:
            return True
    with _connect(db_url) as connection:
        return not inspect(connection).get_table_names()


def check_tools(engine):
    """Refuse before anything changes when a restore would need a missing program."""
    if engine == "postgresql":
        _tool("pg_restore")


def restore_database(file, engine, db_url):
    """Put the copy ``file`` into the empty database of ``db_url``."""
    if engine == "sqlite":
        target = sqlite_path(db_url)
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            target.unlink()  # an empty file (checked by is_empty)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out, open(file, "rb") as source:
            shutil.copyfileobj(source, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        return
    url, env = _libpq(db_url)
    _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
          "--single-transaction", f"--dbname={url}", str(file)], env, "pg_restore")


def current_revision(db_url):
    with _connect(db_url) as connection:
        return connection.scalar(text(_REVISION))


def live_keys(db_url, keys):
    """Which of ``keys`` still have an archive row in the live database."""
    statement = text("SELECT storage_key FROM archives WHERE storage_key IN :keys")
    statement = statement.bindparams(bindparam("keys", expanding=True))
    keys = list(keys)
    found = set()
    with _connect(db_url) as connection:
        for start in range(0, len(keys), 500):
            found.update(connection.scalars(statement, {"keys": keys[start:start + 500]}))
    return found


def archive_rows(db_url):
    """``(id, key, size, sha256)`` of every archive row of the live database."""
    with _connect(db_url) as connection:
        return [tuple(row) for row in connection.execute(text(_ROWS))]


def delete_archive_rows(db_url, keys):
    """Remove the rows of archives deleted while the backup ran (their files are not in
    it): the restored database then names no missing file."""
    statement = text("DELETE FROM archives WHERE storage_key IN :keys")
    statement = statement.bindparams(bindparam("keys", expanding=True))
    with _connect(db_url, begin=True) as connection:
        connection.execute(statement, {"keys": list(keys)})
