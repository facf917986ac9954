"""A real ``collector serve`` process with its own DATA_DIR and database, to kill and restart.

For tests that need a server they can ``kill -9`` (tests/interop/test_tus_crash.py, later
tests/reliability/); the in-process ``live_server`` thread cannot die like that.

* ``database(backend, directory)`` (a context manager) gives a test its own database: an
  SQLite file, or a fresh PostgreSQL database on the server of ``TEST_DB_URL``, dropped
  afterwards (the test is skipped, as in conftest, when that variable is unset).
* ``Server(directory, db_url)``: ``setup()`` migrates and creates an admin with a
  console-minted (mfa) API token, as ``collector migrate``, ``create-user`` and
  ``create-token`` do; ``start()`` runs waitress on 127.0.0.1 on a free port (the same
  port again after a restart, so absolute upload URLs stay valid); ``kill()`` is
  ``kill -9``, ``stop()`` a SIGTERM, both by PID; ``collector(...)`` runs the real CLI.

Run as a script (``python serverproc.py -c INI serve``), this module is the collector
command with one optional **pause point**: with ``COLLECTOR_PAUSE_AT=<point>`` the server
writes the file named by ``COLLECTOR_PAUSE_MARK`` when it gets there and then sleeps, so
that the test can kill it at exactly that moment (once per process); with
``COLLECTOR_PAUSE_RESUME=1`` it waits only until the test removes that file
(``Server.resume()``), so the test can change the world (fill the disk, say) there. The
points:

``append``     a tus chunk is being appended: ``COLLECTOR_PAUSE_AFTER`` bytes of it are in
               the partial file, not fsynced, the new offset not committed (only a chunk
               that starts at ``COLLECTOR_PAUSE_FROM`` bytes or later, default 0);
``stage``      a single-request upload is being staged: ``COLLECTOR_PAUSE_AFTER`` bytes of
               it are in its staging file (S3: read, hashed and in its multipart upload's
               parts sent or the part being filled; a raw body the server spooled: its
               whole spool, just linked into staging);
``finish``     the last chunk is appended and fsynced; the archive is not recorded yet;
``precommit``  the transaction that records an archive (single or tus) is committing: the
               row is flushed, the staged file (or the tus file's second name) is
               complete in staging, nothing is in place yet;
``vote``       the storage manager has voted: the archive file is in place, the database
               has not committed;
``committed``  the database has committed the archive; the answer has not been sent;
``create``     a tus upload's row and empty file exist, its transaction has not committed;
``created``    a tus creation has committed; its answer (the upload's URL) is not sent.

The module also holds what every crash test checks afterwards (``files_under``,
``assert_rows_have_files``, ``purge_leaves_no_orphan``) and plain-HTTP tus helpers.
"""

import base64
import contextlib
import ctypes
import hashlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

from forkserver import ForkServer

MiB = 1024 * 1024
HERE = Path(__file__).resolve()

INI = """\
[app:main]
use = egg:logs-collector
debug = false
allowed_hosts = 127.0.0.1 localhost
data_dir = {data_dir}
upload.max_size = 64MiB
storage.reserve = 0
waitress.threads = 4
waitress.channel_timeout = 30
# Stop at once on SIGTERM (Server.stop), as a kill would: a test paused inside a request
# must not wait for a drain. tests/reliability/test_shutdown.py sets its own.
shutdown.grace = 0

[loggers]
keys = root, waitress, server

[handlers]
keys = console

[formatters]
keys = generic

[logger_root]
level = WARN
handlers = console

[logger_waitress]
level = INFO
handlers =
qualname = waitress

[logger_server]
level = INFO
handlers =
qualname = collector.server

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = generic

[formatter_generic]
format = %(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- one database per test ---------------------------------------------------------------

def _admin_url():
    import pytest
    from sqlalchemy.engine import make_url

    from collector.settings import as_db_url

    url = os.environ.get("TEST_DB_URL", "")
    if not url:
        pytest.skip("PostgreSQL tests need TEST_DB_URL (e.g. postgresql://postgres@127.0.0.1/"
                    "collector_test); .ci/run sets it")
    return make_url(as_db_url(url))


@contextlib.contextmanager
def database(backend, directory):
    """The URL of an empty database of its own for one server: a file in ``directory``
    (SQLite), or a new database beside TEST_DB_URL's, dropped at the end (PostgreSQL)."""
    if backend == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        yield f"sqlite:///{directory / 'db.sqlite3'}"
        return
    import psycopg

    admin = _admin_url()
    name = f"{admin.database}_srv_{os.getpid()}_{secrets.token_hex(4)}"
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_place(backend, directory):
    """A set-up ``Server`` (not started) on a database of its own in ``directory``; stopped
    and its database dropped at the end."""
    with database(backend, directory / "db") as db_url:
        server = Server(directory / "server", db_url).setup()
        try:
            yield server
        finally:
            server.stop()


# --- the server --------------------------------------------------------------------------

class Server:
    """``collector serve`` in a process of its own, on ``directory/data``."""

    def __init__(self, directory, db_url):
        self.dir = Path(directory)
        self.data_dir = self.dir / "data"
        self.db_url = db_url
        self.ini = self.dir / "server.ini"
        self.log_path = self.dir / "server.log"
        self.mark = self.dir / "paused"
        self.secret_key = secrets.token_urlsafe(32)
        self.port = None
        self.proc = None
        self.token = None
        # Environment variables of every start (settings overrides such as STORAGE_RESERVE).
        self.extra_env = {}

    # --- setup

    def setup(self):
        """Schema by the real migrations; an admin and a bearer token minted at the console
        (what ``collector migrate``, ``create-user --admin`` and ``create-token`` do)."""
        from sqlalchemy.orm import Session

        import collector.models  # noqa: F401 (every mapper, for the ORM session)
        from collector.accounts import services, tokens
        from collector.cli import migrate
        from collector.db import make_engine
        from collector.settings import as_db_url

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ini.write_text(INI.format(data_dir=self.data_dir))
        engine = make_engine(as_db_url(self.db_url))
        try:
            migrate(engine)
            with Session(engine) as session, session.begin():
                user = services.create_user(session, "admin", secrets.token_urlsafe(16),
                                            is_admin=True)
                _, self.token = tokens.create_personal_token(session, user, "tests",
                                                             mfa=True)
        finally:
            engine.dispose()
        return self

    def env(self, **extra):
        from collector.settings import ENV_OVERRIDES

        overridden = {variable for _, variable, _, _ in ENV_OVERRIDES}
        env = {k: v for k, v in os.environ.items()
               if k not in overridden and not k.startswith("COLLECTOR_")}
        env.update({"DATA_DIR": str(self.data_dir), "DB_URL": self.db_url,
                    "SECRET_KEY": self.secret_key, "PYTHONUNBUFFERED": "1",
                    "WAITRESS_LISTEN": f"127.0.0.1:{self.port or 0}",
                    "TMPDIR": str(self.data_dir / "tmp")})
        env.update(self.extra_env)
        env.update(extra)
        return env

    def collector(self, *args):
        """The real console command on this server's ini, data dir and database (a process
        forked from the fork server, see forkserver.py)."""
        out, err = (self.dir / f"command-{secrets.token_hex(4)}.{name}"
                    for name in ("out", "err"))
        try:
            code = ForkServer.get().spawn(["-c", str(self.ini), *args], self.env(), out,
                                          err).wait(120)
            stdout, stderr = (path.read_text(errors="replace") if path.exists() else ""
                              for path in (out, err))
        finally:
            out.unlink(missing_ok=True)
            err.unlink(missing_ok=True)
        assert code == 0, f"collector {' '.join(args)}:\n{stderr}"
        return stdout

    # --- the process

    def start(self, pause_at=None, pause_after=MiB, resumable=False, pause_from=0):
        """Start (or restart, on the same port) and wait for the health check."""
        assert self.proc is None, "already running"
        self.port = self.port or free_port()
        self.mark.unlink(missing_ok=True)
        extra = {"COLLECTOR_TEST_PARENT": str(os.getpid())}
        if pause_at:
            extra.update({"COLLECTOR_PAUSE_AT": pause_at,
                          "COLLECTOR_PAUSE_MARK": str(self.mark),
                          "COLLECTOR_PAUSE_AFTER": str(pause_after),
                          "COLLECTOR_PAUSE_FROM": str(pause_from),
                          "COLLECTOR_PAUSE_RESUME": "1" if resumable else ""})
        self.proc = ForkServer.get().spawn(["-c", str(self.ini), "serve"],
                                           self.env(**extra), self.log_path)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self._reap()
                raise RuntimeError(f"server exited with {code}:\n{self.log()[-3000:]}")
            try:
                if self.request("GET", "/api/v1/check/health/", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not come up:\n{self.log()[-3000:]}")
            time.sleep(0.01)

    @property
    def pid(self):
        return self.proc.pid

    def kill(self):
        """``kill -9``: no cleanup of any kind runs in the server."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
            self._reap()

    def stop(self):
        """SIGTERM, then SIGKILL if it does not end within 10 s."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(30)
            self._reap()

    def _reap(self):
        self.proc = None

    def wait_paused(self, timeout=30):
        """Wait until the server has reached its pause point; returns what it wrote."""
        deadline = time.monotonic() + timeout
        while not self.mark.exists():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"server ended before pausing:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not reach its pause point:\n"
                                   f"{self.log()[-3000:]}")
            time.sleep(0.01)
        return json.loads(self.mark.read_text())

    def resume(self):
        """Let a server started with ``resumable=True`` go on from its pause point."""
        self.mark.unlink()

    @contextlib.contextmanager
    def session(self):
        """An ORM session on the server's database (for checks from the test)."""
        from sqlalchemy.orm import Session

        from collector.db import make_engine
        from collector.settings import as_db_url

        engine = make_engine(as_db_url(self.db_url))
        try:
            with Session(engine) as session:
                yield session
        finally:
            engine.dispose()

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def open_files(self):
        """The server's descriptors that name files under its data dir (not sockets)."""
        root = str(self.data_dir)
        result = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                if target.startswith(root):
                    result.append(target)
        return sorted(result)

    # --- HTTP

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=30):
        """(status, headers with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = dict(headers or {})
            if body is not None and not isinstance(body, bytes):
                body = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    data)
        finally:
            conn.close()

    def api(self, method, path, body=None, expect=(200, 201)):
        status, _, data = self.request(method, path, body,
                                       {"Authorization": f"Bearer {self.token}"})
        assert status in expect, f"{method} {path}: {status} {data[:500]!r}"
        return json.loads(data) if data else None

    def archives_of(self, number, timeout=60):
        """The ticket's archives as the API lists them, once every md5 is known: an archive
        over 4 MiB gets its md5 from the server's background job after the upload (after
        a crash, from the restarted server's startup sweep)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.api("GET", f"/api/v1/archives/?ticket={number}")
            if all(a["md5"] is not None for a in listed) or time.monotonic() > deadline:
                return listed
            time.sleep(0.1)

    def ticket(self, number, attempts=3, platform="crash"):
        """A new ticket (and its platform, the first time) through the API."""
        status, _, _ = self.request("GET", f"/api/v1/platforms/{platform}/",
                                    headers={"Authorization": f"Bearer {self.token}"})
        if status == 404:
            self.api("POST", "/api/v1/platforms/", {"name": platform, "pretty_name": "Crash"})
        return self.api("POST", "/api/v1/tickets/",
                        {"number": number, "platform": platform, "attempts": attempts})

    def download_sha256(self, archive_id):
        """sha256 of a staff download of the archive (streamed, not held)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request("GET", f"/api/v1/archives/{archive_id}/download",
                         headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            assert response.status == 200, response.status
            digest = hashlib.sha256()
            while chunk := response.read(MiB):
                digest.update(chunk)
            return digest.hexdigest()
        finally:
            conn.close()


# --- tus over plain HTTP -----------------------------------------------------------------

CHUNK_TYPE = "application/offset+octet-stream"


def tus_headers(token, **extra):
    return {"Tus-Resumable": "1.0.0", "Upload-Token": token, **extra}


def create(server, token, length, name="crash.bin", timeout=30):
    """A tus creation; the upload's path."""
    metadata = "filename " + base64.b64encode(name.encode()).decode()
    status, headers, data = server.request("POST", "/api/v1/uploads/", headers=tus_headers(
        token, **{"Upload-Length": str(length), "Upload-Metadata": metadata}),
        timeout=timeout)
    assert status == 201, data
    return urllib.parse.urlsplit(headers["location"]).path


def patch(server, token, path, offset, data, timeout=30, **extra):
    return server.request("PATCH", path, data, tus_headers(
        token, **{"Upload-Offset": str(offset), "Content-Type": CHUNK_TYPE}, **extra),
        timeout=timeout)


def receipt(server, token, path, status, headers):
    """The JSON receipt of an upload whose last PATCH answered (status, headers): 204 with
    no body and the archive in headers (tus 1.0.0), then GET on the upload's URL."""
    assert status == 204, status
    got, _, data = server.request("GET", path, headers={"Upload-Token": token})
    assert got == 200, (got, data[:500])
    answer = json.loads(data)
    assert headers["upload-archive-id"] == str(answer["id"])
    assert headers["upload-receipt-sha256"] == answer["sha256"]
    return answer


def head(server, token, path):
    status, headers, data = server.request("HEAD", path, headers=tus_headers(token))
    assert status == 200, (status, data)
    return headers


# --- what must hold after every crash ------------------------------------------------------

def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_rows_have_files(server):
    """No archive row and no unfinished upload row points to a missing file."""
    from sqlalchemy import select

    from collector.archives.models import Archive, TusUpload

    with server.session() as session:
        for archive in session.scalars(select(Archive)):
            assert (server.data_dir / "archives" / archive.storage_key[:2] /
                    archive.storage_key).is_file(), f"archive {archive.id} has no file"
        for upload in session.scalars(select(TusUpload).where(
                TusUpload.finished_at.is_(None))):
            assert (server.data_dir / "uploads" / upload.storage_key).is_file(), \
                f"upload {upload.id} has no partial file"


def purge_leaves_no_orphan(server):
    """``purge --dry-run`` removes nothing and names what ``purge`` then removes; after it
    every file belongs to a row. Returns the removed paths (relative to DATA_DIR)."""
    from sqlalchemy import select

    from collector.archives.models import Archive, TusUpload

    data = server.data_dir
    before = files_under(data)
    dry = server.collector("purge", "--dry-run", "--stale-hours", "0")
    assert files_under(data) == before, "a dry run removed files"
    real = server.collector("purge", "--stale-hours", "0")

    def named(output, verb):
        # "removed <what> <path>" lines; the last word is the file (under DATA_DIR).
        return sorted(str(Path(line.rsplit(" ", 1)[1]).relative_to(data))
                      for line in output.splitlines() if line.startswith(verb + " ")
                      and line.rsplit(" ", 1)[1].startswith(f"{data}/"))

    removed = named(real, "removed")
    assert named(dry, "would remove") == removed
    assert sorted(set(before) - set(files_under(data))) == removed
    with server.session() as session:
        archives = {f"archives/{k[:2]}/{k}" for k in session.scalars(
            select(Archive.storage_key))}
        uploads = {f"uploads/{k}" for k in session.scalars(
            select(TusUpload.storage_key).where(TusUpload.finished_at.is_(None)))}
    assert set(files_under(data)) == archives | uploads
    assert "would remove 0 file(s)" in server.collector("purge", "--dry-run",
                                                        "--stale-hours", "0")
    return removed


# --- pause points (only when this file runs as the server) ---------------------------------

_paused = threading.Event()


def _pause(point, **info):
    """Say where we are (atomically), then wait for the test's kill -9."""
    if _paused.is_set():
        return
    _paused.set()
    mark = Path(os.environ["COLLECTOR_PAUSE_MARK"])
    part = mark.with_suffix(".tmp")
    part.write_text(json.dumps({"point": point, "pid": os.getpid(), **info}))
    os.rename(part, mark)
    deadline = time.monotonic() + 3600
    if os.environ.get("COLLECTOR_PAUSE_RESUME") == "1":
        while mark.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return
    time.sleep(3600)


def _staged_name(staged):
    """A staged archive's file name in DATA_DIR/tmp; on S3 (no local file for a single
    request) its storage key, which names its multipart upload and object."""
    path = getattr(staged, "path", None)
    return staged.key if path is None else path.name


def _pause_spooled_staging(point, after):
    """The ``stage`` point where ``collector serve`` spooled and hashed the body as it
    arrived (archives/uploads/receiving.py): a raw body's spool is linked into staging
    whole (the point is then right after the link), a multipart body's file part is
    copied in the kernel (in 1 MiB steps here; the point is before the step that follows
    ``after`` bytes, the spool behind them freed)."""
    from collector.archives.storage import spooled

    link = spooled.SpooledBody.link

    def paused_link(self, path):
        linked = link(self, path)
        if linked:
            _pause(point, staging=Path(path).name, written=self.size)
        return linked

    spooled.SpooledBody.link = paused_link
    spooled.COPY_STEP = MiB
    copy_file_range = os.copy_file_range

    def paused_copy_file_range(source, target, count, offset_src=None, offset_dst=None):
        # Before a step, once ``after`` bytes are copied (and the spool behind them freed).
        path = os.readlink(f"/proc/self/fd/{target}")
        if path.startswith(str(Path(os.environ["DATA_DIR"]) / "tmp")) and \
                os.fstat(target).st_size >= after:
            _pause(point, staging=Path(path).name, written=os.fstat(target).st_size)
        return copy_file_range(source, target, count, offset_src, offset_dst)

    spooled.os.copy_file_range = paused_copy_file_range


def _install_pause_point(point):
    from collector.archives.storage import StorageManager
    from collector.archives.uploads import tus

    if point == "append":
        after = int(os.environ.get("COLLECTOR_PAUSE_AFTER", MiB))
        start = int(os.environ.get("COLLECTOR_PAUSE_FROM") or 0)
        append = tus.append

        def pausing(chunks, upload):
            written = 0
            for chunk in chunks:
                if written >= after and upload.offset >= start:
                    _pause(point, upload=upload.id, offset=upload.offset, written=written)
                written += len(chunk)
                yield chunk

        def paused_append(*args, **kwargs):
            args = list(args)
            args[5] = pausing(args[5], args[3])  # chunks, upload
            return append(*args, **kwargs)

        tus.append = paused_append
    elif point == "stage":
        from collector.archives.storage import streams

        after = int(os.environ.get("COLLECTOR_PAUSE_AFTER", MiB))
        write_stream = streams.write_stream

        def pausing_chunks(chunks, staged):
            for chunk in chunks:
                if staged.size >= after:
                    _pause(point, staging=_staged_name(staged), written=staged.size,
                           upload_id=getattr(staged, "upload_id", None))
                yield chunk

        def paused_write_stream(staged, chunks, max_size):
            return write_stream(staged, pausing_chunks(chunks, staged), max_size)

        streams.write_stream = paused_write_stream
        _pause_spooled_staging(point, after)
        if os.environ.get("STORAGE_URL"):
            # S3 stages through its own write (multipart parts), not write_stream.
            from collector.archives.storage.s3 import S3ArchiveStorage

            s3_write = S3ArchiveStorage.write

            def paused_s3_write(self, staged, chunks, max_size):
                return s3_write(self, staged, pausing_chunks(chunks, staged), max_size)

            S3ArchiveStorage.write = paused_s3_write
    elif point == "finish":
        from collector.archives.uploads.tus import chunks as tus_chunks

        finish = tus_chunks.finish

        def paused_finish(dbsession, storage, store, upload, *args):
            _pause(point, upload=upload.id, length=upload.length)
            return finish(dbsession, storage, store, upload, *args)

        tus_chunks.finish = paused_finish
    elif point in ("precommit", "vote"):
        vote = StorageManager.tpc_vote

        def paused_vote(self, transaction):
            # Only a transaction that records an archive stages a file.
            staged = [_staged_name(s) for s in self._staged]
            if staged and point == "precommit":
                _pause(point, staged=staged)
            vote(self, transaction)
            if staged:
                _pause(point, staged=staged)

        StorageManager.tpc_vote = paused_vote
    elif point == "committed":
        finish_tpc = StorageManager.tpc_finish

        def paused_tpc_finish(self, transaction):
            published = bool(self._published)
            finish_tpc(self, transaction)
            if published:
                _pause(point)

        StorageManager.tpc_finish = paused_tpc_finish
    elif point in ("create", "created"):
        create_upload = tus.create_upload

        def paused_create_upload(dbsession, storage, *args, **kwargs):
            upload = create_upload(dbsession, storage, *args, **kwargs)
            info = {"upload": upload.id, "key": upload.storage_key}
            if point == "create":
                _pause(point, **info)
            else:
                storage.transaction_manager.get().addAfterCommitHook(
                    lambda success: _pause(point, **info) if success else None)
            return upload

        tus.create_upload = paused_create_upload
    elif point:
        raise SystemExit(f"unknown COLLECTOR_PAUSE_AT {point!r}")


def announce(request, line):
    """Write ``line`` on the terminal even when pytest captures output (a fixture's
    request): a random seed printed this way replays a failure."""
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def _die_with_the_test():
    """A test run killed without its finalizers (timeout, SIGTERM) must not leave its
    servers behind: the kernel kills this process when the thread that started it ends
    (so start servers from the test's main thread)."""
    parent = int(os.environ.get("COLLECTOR_TEST_PARENT", "0"))
    if not parent:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent:  # it ended before we asked
        os._exit(1)


def child_main(argv=None):
    """The collector command (``argv``), with the pause point the environment names."""
    _die_with_the_test()
    _install_pause_point(os.environ.get("COLLECTOR_PAUSE_AT"))
    from collector.cli import main

    return main(argv)


if __name__ == "__main__":
    child_main()
