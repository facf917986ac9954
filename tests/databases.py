"""The test databases: one per backend (and per xdist worker), migrated once per session.

Each backend gives two engines on the same database:

* ``engine``: the ordinary engine (a pool of connections, real commits). Tests marked
  ``commits`` use it — live servers, threads, subprocesses, the command line — and the
  tables are emptied after each of them (``Database.empty``).
* ``rollback_engine``: every connection it hands out is *one* DBAPI connection, and every
  transaction begun on it is a SAVEPOINT inside one outer transaction per test, rolled back
  at the end (``Database.rolled_back``). The app's request sessions, the throttles' and the
  audit log's transactions of their own (``engine.begin()``) and the tests' factory all
  commit to savepoints of that one transaction, so they see each other's rows as they
  would in production, and nothing is left behind. The test thread is the only one that
  may use it: another thread (a live server, the inspect index builder) fails loudly,
  since that test needs real commits (``@pytest.mark.commits``).
"""

import os
import threading

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from collector.cli import migrate
from collector.db import Base, make_engine


class OtherThread(RuntimeError):
    """The rollback engine was used from a thread other than the test's."""


class _Savepoint:
    __slots__ = ("connection", "holds_commit", "name", "wrote")

    def __init__(self, connection, name):
        self.connection, self.name = connection, name
        self.wrote = False  # this transaction changed rows itself
        self.holds_commit = False  # a transaction begun after it committed inside it


_READS = ("SELECT", "SHOW", "PRAGMA", "EXPLAIN")


class SavepointTransactions:
    """Turns the transactions of one shared DBAPI connection into nested savepoints.

    SQLAlchemy begins, commits and rolls back a ``Connection``'s transaction through the
    dialect; here those calls are no-ops and the engine's ``begin``/``commit``/``rollback``
    events issue ``SAVEPOINT``/``RELEASE``/``ROLLBACK TO`` instead. Transactions of a
    single thread nest, so a stack is enough; one that ends out of order fails loudly.

    In production two transactions are independent; here a later one nests in an earlier
    one. When the earlier one rolls back, the later one's committed rows must stay (a
    throttle's slot taken during a request that fails): that holds if the earlier one
    changed nothing itself, so it is released rather than rolled back. If it did change
    rows, no savepoint can keep one and drop the other: the test fails at its end, since
    it needs real commits.
    """

    def __init__(self, engine):
        self.engine = engine
        self.stack = []  # [_Savepoint], innermost last
        self.thread = None
        self.active = False
        self.diverged = None
        # The dialect's first-connect initialisation commits and rolls back for real.
        with engine.connect():
            pass
        dialect = engine.dialect
        dialect.do_begin = dialect.do_commit = dialect.do_rollback = lambda _dbapi: None
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        event.listen(engine, "before_cursor_execute", self._before_execute)

    def _execute(self, connection, statement):
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()

    def _begin(self, connection):
        if not self.active:
            raise RuntimeError("the rollback engine is used outside a test")
        if threading.get_ident() != self.thread:
            raise OtherThread("the database was used from another thread: a test that "
                              "needs real commits is marked @pytest.mark.commits")
        savepoint = _Savepoint(connection, f"test_tx_{len(self.stack)}")
        self._execute(connection, f"SAVEPOINT {savepoint.name}")
        self.stack.append(savepoint)

    def _before_execute(self, connection, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith(_READS):
            return
        for savepoint in reversed(self.stack):
            if savepoint.connection is connection:
                savepoint.wrote = True
                return

    def _pop(self, connection):
        if not any(savepoint.connection is connection for savepoint in self.stack):
            return None  # a connection left over from an earlier test: nothing of it remains
        savepoint = self.stack.pop()
        assert savepoint.connection is connection, \
            "transactions on the test connection do not nest"
        return savepoint

    def _commit(self, connection):
        savepoint = self._pop(connection)
        if savepoint is None:
            return
        self._execute(connection, f"RELEASE SAVEPOINT {savepoint.name}")
        for outer in self.stack:
            outer.holds_commit = True

    def _rollback(self, connection):
        savepoint = self._pop(connection)
        if savepoint is None:
            return
        if savepoint.holds_commit and not savepoint.wrote:
            # Nothing of its own to undo; what committed inside it stays, as in production.
            self._execute(connection, f"RELEASE SAVEPOINT {savepoint.name}")
            for outer in self.stack:
                outer.holds_commit = True
            return
        if savepoint.holds_commit:
            self.diverged = self.diverged or (
                "a transaction of its own committed inside another transaction that wrote "
                "rows and then rolled back: production keeps the first one's rows, a "
                "rolled-back test cannot. Mark the test @pytest.mark.commits.")
        self._execute(connection, f"ROLLBACK TO SAVEPOINT {savepoint.name}")
        self._execute(connection, f"RELEASE SAVEPOINT {savepoint.name}")

    def start(self):
        raw = self.engine.raw_connection()
        try:
            dbapi = raw.dbapi_connection
            dbapi.rollback()
            if self.engine.dialect.name == "sqlite":
                # pysqlite begins only before DML, and a SAVEPOINT outside a transaction
                # would be committed by its RELEASE.
                dbapi.execute("BEGIN")
        finally:
            raw.close()
        self.stack.clear()
        self.thread = threading.get_ident()
        self.active = True
        self.diverged = None

    def stop(self):
        """Roll the test's transaction back; raises when the test saw a transaction of its
        own undone by another one's rollback (it needs real commits)."""
        self.active = False
        self.stack.clear()
        raw = self.engine.raw_connection()
        try:
            raw.dbapi_connection.rollback()
        finally:
            raw.close()
        if self.diverged:
            raise AssertionError(self.diverged)


def _worker_suffix():
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return f"_{worker}" if worker else ""


class Database:
    """One migrated database of one backend for this session (and xdist worker)."""

    def __init__(self, backend, url, created=None):
        self.backend = backend
        self.url = url
        self._created = created  # (admin URL, name) of a database made for this worker
        if backend == "sqlite":
            self.engine = make_engine(url)
        else:
            self.engine = make_engine(url, pool_size=20, max_overflow=20)
            with self.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        migrate(self.engine)
        self._rollback = None
        self._tables = [t.name for t in reversed(Base.metadata.sorted_tables)]

    @classmethod
    def sqlite(cls, directory):
        return cls("sqlite", f"sqlite:///{directory / 'test.sqlite3'}")

    @classmethod
    def postgresql(cls, base_url):
        """The database of ``base_url`` itself, or under xdist one database per worker
        beside it (``<name>_gw0`` …), created here and dropped by ``close``."""
        suffix = _worker_suffix()
        if not suffix:
            return cls("postgresql", base_url)
        import psycopg

        url = make_url(base_url)
        name = f"{url.database}{suffix}"
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return cls("postgresql", url.set(database=name).render_as_string(hide_password=False),
                   created=(admin, name))

    @property
    def rollback_engine(self):
        if self._rollback is None:
            if self.backend == "sqlite":
                engine = make_engine(self.url, poolclass=StaticPool,
                                     pool_reset_on_return=None)
            else:
                engine = create_engine(self.url, poolclass=StaticPool,
                                       pool_reset_on_return=None)
            self._rollback = SavepointTransactions(engine)
        return self._rollback.engine

    def rolled_back(self):
        """Start a test's outer transaction; returns the function that rolls it back."""
        self.rollback_engine  # noqa: B018  (made on first use)
        self._rollback.start()
        return self._rollback.stop

    def empty(self):
        """After a test that committed: every table emptied (DELETE; measured faster than
        TRUNCATE on these small tables) and PostgreSQL's sequences restarted, so ids
        start at 1 again as they do on a new installation."""
        with self.engine.begin() as conn:
            for table in self._tables:
                conn.execute(text(f"DELETE FROM {table}"))
            if self.backend == "postgresql":
                conn.execute(text(_RESTART_SEQUENCES))

    def close(self):
        if self._rollback is not None:
            self._rollback.engine.dispose()
        self.engine.dispose()
        if self._created is not None:
            import psycopg

            admin, name = self._created
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Only the sequences that moved (is_called), in one round trip.
_RESTART_SEQUENCES = """
DO $$
DECLARE seq record;
BEGIN
  FOR seq IN SELECT schemaname, sequencename FROM pg_sequences
             WHERE schemaname = 'public' AND last_value IS NOT NULL LOOP
    EXECUTE format('ALTER SEQUENCE %I.%I RESTART', seq.schemaname, seq.sequencename);
  END LOOP;
END $$
"""


class ThrowawayPostgres:
    """A PostgreSQL server of the tests' own, from the local binaries (``initdb``,
    ``pg_ctl``), in a temporary directory and on a Unix socket only; ``stop`` removes it.

    ``start()`` returns None, with the reason in ``self.missing``, when it cannot run: no
    binaries, or running as root (PostgreSQL refuses to).
    """

    def __init__(self):
        self.directory = None
        self.missing = None

    @staticmethod
    def _binaries():
        import glob
        import shutil

        found = shutil.which("initdb"), shutil.which("pg_ctl")
        if all(found):
            return found
        for bin_dir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
            candidates = f"{bin_dir}/initdb", f"{bin_dir}/pg_ctl"
            if all(os.access(path, os.X_OK) for path in candidates):
                return candidates
        return None

    def start(self):
        import subprocess
        import tempfile

        binaries = self._binaries()
        if binaries is None:
            self.missing = "no PostgreSQL binaries (initdb, pg_ctl) found"
            return None
        if os.geteuid() == 0:
            self.missing = "PostgreSQL does not run as root"
            return None
        initdb, pg_ctl = binaries
        self.directory = tempfile.mkdtemp(prefix="collector-pg-")
        data, log = f"{self.directory}/data", f"{self.directory}/log"
        self._pg_ctl = pg_ctl
        subprocess.run([initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--no-sync"], check=True, capture_output=True)
        # Durability is not what these tests measure of PostgreSQL.
        options = (f"-k {self.directory} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        subprocess.run([pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "start"],
                       check=True, capture_output=True)
        import psycopg

        with psycopg.connect(f"host={self.directory} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE collector_test")
        return f"postgresql://postgres@/collector_test?host={self.directory}"

    def stop(self):
        import shutil
        import subprocess

        if self.directory is None:
            return
        subprocess.run([self._pg_ctl, "-D", f"{self.directory}/data", "-m", "immediate",
                        "stop"], check=False, capture_output=True)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
