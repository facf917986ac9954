"""Database down: a real ``collector serve`` on a PostgreSQL instance of the test's own.

The shared PostgreSQL server is never touched (other tests use it at the same time): the
test runs ``initdb`` and ``pg_ctl`` as the ``postgres`` user on a directory and port of its
own (skipped, saying why, where that is impossible), stops it mid-run and starts it again.
What it shows, without restarting the app:

* while the database is down the health check says 503 (database unavailable) and API
  requests and uploads get a clean 503 with a JSON ``detail``, answered by the app's
  error view (no exception reaches waitress, whose answer would be a plain-text 500);
* a single POST whose staging was under way when the database went away does not become
  an archive, and its staged file is removed;
* when the database returns, health is 200 again and uploads and the API work; what was
  stored before keeps its sha256.
"""

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from serverproc import MiB, Server, free_port
from sqlalchemy import select

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)
from collector.archives.models import Archive
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow



def postgres_bindir():
    """Where initdb and pg_ctl are: ``pg_config --bindir`` (Debian keeps them off PATH)."""
    if shutil.which("pg_config") is None:
        return None
    result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                            check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


PG_BIN = postgres_bindir()


class OwnPostgres:
    """A PostgreSQL instance in a directory of its own, run as the ``postgres`` user."""

    def __init__(self, directory, port):
        self.dir = directory
        self.data = directory / "data"
        self.port = port

    def run(self, *args):
        # In its own directory: the postgres user may not enter the caller's (a checkout
        # under root's 0700 temp directory, as in CI).
        return subprocess.run(["runuser", "-u", "postgres", "--", *map(str, args)],
                              capture_output=True, text=True, timeout=120, check=False,
                              cwd=self.dir)

    def init(self):
        result = self.run(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                          "--no-sync")
        return result

    def start(self):
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        result = self.run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l",
                          self.dir / "postgres.log", "-w", "start")
        assert result.returncode == 0, result.stderr + self.log()
        return self

    def stop(self, mode="fast"):
        result = self.run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")
        assert result.returncode == 0, result.stderr + self.log()

    def running(self):
        return self.run(PG_BIN / "pg_ctl", "-D", self.data, "status").returncode == 0

    def log(self):
        with contextlib.suppress(OSError):
            return (self.dir / "postgres.log").read_text(errors="replace")[-3000:]
        return ""

    @property
    def url(self):
        return f"postgresql://postgres@127.0.0.1:{self.port}/collector"


@pytest.fixture
def own_postgres():
    if os.geteuid() != 0:
        pytest.skip("an own PostgreSQL instance is started as the postgres user, which "
                    "needs root")
    if PG_BIN is None or not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl (found by pg_config --bindir) "
                    "and runuser")
    try:
        postgres_user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("there is no postgres user to run PostgreSQL as")
    # Not under pytest's tmp_path (root's only, 0700), nor tempfile's default directory:
    # the app factory points that at its DATA_DIR/tmp, which an earlier test's app may
    # have left under tmp_path. /tmp itself is open to every user.
    directory = Path(tempfile.mkdtemp(prefix="collector-pg-", dir="/tmp"))
    os.chown(directory, postgres_user.pw_uid, postgres_user.pw_gid)
    instance = OwnPostgres(directory, free_port())
    try:
        initialised = instance.init()
        if initialised.returncode != 0:
            pytest.skip(f"initdb failed here: {initialised.stderr.strip()[-500:]}")
        instance.start()
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={instance.port} user=postgres "
                             "dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE collector")
        yield instance
    finally:
        if instance.running():
            instance.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(tmp_path, own_postgres):
    server = Server(tmp_path / "server", own_postgres.url).setup()
    try:
        yield server
    finally:
        server.stop()


def post_archive(server, token, body, name="db.bin"):
    return server.request("POST", f"/api/v1/archives/?filename={name}", body, {
        "Upload-Token": token, "Content-Type": "application/octet-stream"}, timeout=60)


def assert_clean_503(status, headers, data):
    assert status == 503, (status, data[:500])
    assert headers["content-type"].startswith("application/json")
    detail = json.loads(data)["detail"]
    assert detail and "Traceback" not in detail
    return detail


def files_under(path):
    return sorted(p.name for p in path.rglob("*") if p.is_file()
                  and not p.name.startswith(".probe"))


def test_the_app_answers_503_while_the_database_is_down_and_recovers(server, own_postgres):
    server.start(pause_at="stage", pause_after=MiB, resumable=True)
    ticket = server.ticket(9001, attempts=5)
    token = ticket["token"]
    stored = os.urandom(3 * MiB)
    answer = {}

    # The first upload is staged when the database goes away (the server waits at the
    # pause point while the test stops PostgreSQL).
    def send():
        answer["result"] = post_archive(server, token, stored)

    sender = threading.Thread(target=send)
    sender.start()
    paused = server.wait_paused()
    own_postgres.stop()
    server.resume()
    sender.join(60)
    assert not sender.is_alive()
    assert_clean_503(*answer["result"])
    assert not (server.data_dir / "tmp" / paused["staging"]).exists()
    assert files_under(server.data_dir / "archives") == []

    status, headers, data = server.request("GET", "/api/v1/check/health/")
    assert status == 503, data
    assert json.loads(data)["database"] == "unavailable"
    assert_clean_503(*post_archive(server, token, os.urandom(MiB)))
    assert_clean_503(*server.request("GET", "/api/v1/tickets/", headers={
        "Authorization": f"Bearer {server.token}"}))
    assert_clean_503(*server.request("POST", "/api/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Length": str(MiB)}))
    assert files_under(server.data_dir / "tmp") == []
    assert files_under(server.data_dir / "archives") == []
    assert files_under(server.data_dir / "uploads") == []

    # Back, on the same port: the same process serves again.
    own_postgres.start()
    deadline = time.monotonic() + 30
    while server.request("GET", "/api/v1/check/health/")[0] != 200:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)
    status, _, data = post_archive(server, token, stored)
    assert status == 201, data
    receipt = json.loads(data)
    assert receipt["sha256"] == hashlib.sha256(stored).hexdigest()
    assert server.download_sha256(receipt["id"]) == receipt["sha256"]
    assert server.api("GET", "/api/v1/tickets/9001/")["attempts"] == 4
    with server.session() as session:
        assert session.get(Ticket, ticket["id"]).attempts == 4
        assert [a.sha256 for a in session.scalars(select(Archive))] == [receipt["sha256"]]
    assert len(files_under(server.data_dir / "archives")) == 1
    # Every failure was answered by the app's error view (a warning, no traceback); the
    # only errors logged are the audit log's, which cannot write its upload.failed events
    # while the database is down.
    log = server.log()
    assert "Exception while serving" not in log and "unexpected error" not in log, log[-3000:]
    assert [line for line in log.splitlines() if " ERROR " in line
            and "[collector.audit.services]" not in line] == [], log[-3000:]
    assert "database unavailable" in log
