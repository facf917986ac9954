"""scripts/uploader.sh, the customer's console client, against a real waitress server.

The script runs as a subprocess under ``sh`` (dash on Debian) and ``bash --posix``, with no
stdin, no controlling terminal (a session of its own) and an environment of PATH only. The
app is wrapped so that each test can prove which requests reached the server: a refused
token must stop the script before any POST.
"""

import datetime as dt
import hashlib
import http.server
import json
import os
import pathlib
import pty
import select as io_select
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
from sqlalchemy import func, select

from collector.archives.models import Archive
from collector.db import utcnow
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "uploader.sh"
SHELLS = {"sh": ["sh"], "bash-posix": ["bash", "--posix"]}
MiB = 1024 * 1024


class RecordingApp:
    """The WSGI app, noting the method and path of every request that reaches it; ``hook``
    (when set) is called with both before the app answers."""

    def __init__(self, app):
        self.app = app
        self.registry = app.registry
        self.requests = []
        self.hook = None

    def __call__(self, environ, start_response):
        self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if self.hook is not None:
            # A hook may answer instead of the app: (status line, body).
            answer = self.hook(*self.requests[-1])
            if answer is not None:
                start_response(answer[0], [("Content-Type", "text/plain")])
                return [answer[1]]
        return self.app(environ, start_response)

    def posts(self):
        return [r for r in self.requests if r[0] != "GET"]

    def methods(self):
        return [method for method, _ in self.requests]


@pytest.fixture
def app(app):
    return RecordingApp(app)


@pytest.fixture(params=sorted(SHELLS))
def shell(request):
    command = SHELLS[request.param]
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed")
    return command


def run(shell, *args, env=None, timeout=120):
    return subprocess.run([*shell, str(SCRIPT), *args], check=False, stdin=subprocess.DEVNULL,
                          capture_output=True, encoding="utf-8", timeout=timeout,
                          start_new_session=True,  # no /dev/tty to ask on
                          env={"PATH": os.environ["PATH"], **(env or {})})


def start(shell, *args, env=None):
    """The script in its own process group, so that a test can kill it and its curl."""
    return subprocess.Popen([*shell, str(SCRIPT), *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            encoding="utf-8", start_new_session=True,
                            env={"PATH": os.environ["PATH"], **(env or {})})


def random_file(path, size):
    path.write_bytes(os.urandom(size))
    return path


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_count(session):
    session.rollback()  # see what the server committed, not this session's snapshot
    return session.scalar(select(func.count()).select_from(Archive))


def attempts_of(session, ticket):
    session.rollback()
    return session.scalar(select(Ticket.attempts).where(Ticket.id == ticket.id))


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def platform(factory):
    return factory.platform("vm6")


# --- the successful upload ------------------------------------------------------------

def test_upload_prints_and_verifies_sha256(shell, live_server, app, factory, platform,
                                           dbsession, staff, tmp_path):
    ticket = factory.ticket(platform, number=4242, attempts=2)
    path = random_file(tmp_path / "journal é 2024;x.tar.gz", 5 * MiB + 123)
    local = sha256_of(path)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server + "/")

    assert done.returncode == 0, done.stderr
    assert f"sha256: {local} (server)" in done.stdout
    assert f"sha256: {local} (local)" in done.stdout
    assert "OK: the server has exactly this file." in done.stdout
    assert f"size:   {5 * MiB + 123} bytes" in done.stdout
    assert "name:   journal é 2024;x.tar.gz" in done.stdout
    assert "2 upload attempt(s) left" in done.stderr
    # Not a terminal: no progress bar drawn into the log.
    assert "#" not in done.stderr
    # Token check, tus discovery, creation, one chunk (the default chunk is 64 MiB), the
    # receipt (the last chunk's 204 has no body).
    assert [m for m, _ in app.requests] == ["GET", "OPTIONS", "POST", "PATCH", "GET"]
    assert "state=done" in (tmp_path / (path.name + ".upload")).read_text()
    assert not list(tmp_path.glob("*.upload-sum.*"))

    dbsession.rollback()
    row = dbsession.scalars(select(Archive).where(Archive.ticket_id == ticket.id)).one()
    assert (row.sha256, row.size) == (local, 5 * MiB + 123)
    # Over 4 MiB the md5 comes later, from the server's background job (off in these
    # tests): the receipt said "md5": null and the last chunk had no Upload-Receipt-Md5.
    assert row.md5 is None and "md5" not in done.stdout
    assert row.name == "journal é 2024;x.tar.gz"
    assert f"Uploaded archive {row.id} to ticket 4242" in done.stdout
    assert attempts_of(dbsession, ticket) == 1

    # The stored bytes are the file's, as staff download them.
    request = urllib.request.Request(f"{live_server}/api/v1/archives/{row.id}/download",
                                     headers=staff.headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert hashlib.sha256(answer.read()).hexdigest() == local


@pytest.fixture
def raw_peer():
    """A TCP peer that is not an HTTP server: ``peer.reply`` bytes, or silence when None."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)  # a blocked accept() would not notice the listener closing
    peer = type("Peer", (), {"reply": None, "port": listener.getsockname()[1]})()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.recv(4096)
                if peer.reply is not None:
                    conn.sendall(peer.reply)
                else:
                    stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield peer
    stop.set()
    listener.close()
    thread.join(timeout=15)


def test_dst_means_https(shell, raw_peer, tmp_path):
    """-d DOMAIN speaks https: a plain-http answer makes the TLS handshake fail."""
    raw_peer.reply = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    path = random_file(tmp_path / "a.log", 1000)
    host_port = f"127.0.0.1:{raw_peer.port}"

    done = run(shell, "--file", str(path), "--token", "A" * 43, "--dst", host_port)

    assert done.returncode == 5
    assert f"https://{host_port}" in done.stderr
    assert "the TLS handshake failed" in done.stderr


def test_timeout_is_explained(shell, raw_peer, tmp_path):
    path = random_file(tmp_path / "a.log", 1000)

    done = run(shell, "-f", str(path), "-t", "A" * 43, "-d", f"127.0.0.1:{raw_peer.port}",
               env={"UPLOADER_CONNECT_TIMEOUT": "1"}, timeout=30)

    assert done.returncode == 5
    assert "timed out" in done.stderr and "UPLOADER_CONNECT_TIMEOUT" in done.stderr


# --- refusals before a byte of the file is sent ---------------------------------------

def test_unknown_token_is_refused(shell, live_server, app, dbsession, platform, tmp_path):
    path = random_file(tmp_path / "a.log", 64 * 1024)

    done = run(shell, "-f", str(path), "-t", "A" * 43, "-u", live_server)

    assert done.returncode == 3
    assert "token refused: upload token is not valid" in done.stderr
    assert app.posts() == []
    assert archive_count(dbsession) == 0


@pytest.mark.parametrize("state, detail", [
    ("used up", "no upload attempts left"),
    ("resolved", "already resolved"),
    ("expired", "expired at"),
])
def test_unusable_token_stops_before_uploading(shell, live_server, app, factory, platform,
                                               dbsession, tmp_path, state, detail):
    if state == "used up":
        ticket = factory.ticket(platform, attempts=0)
    elif state == "expired":
        ticket = factory.ticket(platform, expires_at=utcnow() - dt.timedelta(minutes=1))
    else:
        ticket = factory.ticket(platform, attempts=3)
        ticket.resolved = True
        dbsession.commit()
    before = attempts_of(dbsession, ticket)
    path = random_file(tmp_path / "a.log", 2 * MiB)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server)

    assert done.returncode == 3, done.stderr
    assert "token refused" in done.stderr and detail in done.stderr
    assert "Uploading" not in done.stderr
    assert app.requests == [("GET", f"/api/v1/check/token/{ticket.token}")]
    assert archive_count(dbsession) == 0
    assert attempts_of(dbsession, ticket) == before


def test_token_with_foreign_characters_never_leaves(shell, live_server, app, tmp_path):
    path = random_file(tmp_path / "a.log", 10)

    done = run(shell, "-f", str(path), "-t", "abc/../../x\r\nX-Evil: 1", "-u", live_server)

    assert done.returncode == 2
    assert "copy it again" in done.stderr
    assert app.requests == []


# --- refusals by the server during the upload -----------------------------------------

@pytest.mark.parametrize("setting, value, status_text", [
    ("upload.max_size", 1 * MiB, "larger than this server accepts"),
    ("storage.reserve", 2**60, "not enough free storage"),
])
def test_server_refusal_is_explained(shell, live_server, app, factory, platform, dbsession,
                                     tmp_path, setting, value, status_text):
    ticket = factory.ticket(platform, attempts=2)
    app.registry.settings[setting] = value
    path = random_file(tmp_path / "big.tar", 2 * MiB)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server)

    assert done.returncode == 4, done.stderr
    assert status_text in done.stderr
    assert archive_count(dbsession) == 0
    assert attempts_of(dbsession, ticket) == 2


# --- usage and local problems ---------------------------------------------------------

def test_help_and_version(shell):
    done = run(shell, "-h")
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: uploader.sh -f FILE -t TOKEN")
    for option in ("--file", "--token", "--url", "--dst", "--again", "--help", "--version"):
        assert option in done.stdout

    version = run(shell, "--version")
    assert version.returncode == 0 and version.stdout.startswith("uploader.sh ")


@pytest.mark.parametrize("args, message", [
    ([], "no file given"),
    (["-f", "x", "-u", "http://h"], "no upload token given"),
    (["-f", "x", "-t", "t"], "no server given"),
    (["-f", "x", "-t", "t", "-u", "http://h", "-d", "h"], "not both"),
    (["-f", "x", "-t", "t", "-u", "ftp://h"], "must start with http:// or https://"),
    (["-f", "x", "-t", "t", "-d", "https://h"], "-d takes a domain name"),
    (["-f"], "option -f needs a value"),
    (["--frobnicate"], "unknown option: --frobnicate"),
])
def test_bad_usage(shell, args, message):
    done = run(shell, *args)
    assert done.returncode == 2
    assert message in done.stderr and "--help" in done.stderr


@pytest.mark.parametrize("kind, message", [
    ("missing", "no such file"),
    ("directory", "not a regular file"),
    ("empty", "the file is empty"),
])
def test_unusable_file(shell, live_server, app, factory, platform, tmp_path, kind, message):
    ticket = factory.ticket(platform)
    path = tmp_path / "logs.tar.gz"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server)

    assert done.returncode == 2
    assert message in done.stderr
    assert app.requests == []


def test_connection_refused(shell, tmp_path):
    path = random_file(tmp_path / "a.log", 10)
    url = f"http://127.0.0.1:{closed_port()}"

    done = run(shell, "-f", str(path), "-t", "A" * 43, "-u", url)

    assert done.returncode == 5
    assert f"could not check the token at {url}" in done.stderr
    assert "connection refused" in done.stderr


# --- what only a misbehaving server can show ------------------------------------------

VALID_TOKEN = json.dumps({"token": "T", "attempts": 1, "resolved": False, "valid": True,
                          "expires_at": "2099-01-01T00:00:00+00:00",
                          "detail": "token is valid"}).encode()


class FakeCollector(http.server.BaseHTTPRequestHandler):
    """Answers the token check and the upload (read whole) as the test sets on the server."""

    def do_GET(self):
        self._answer(*self.server.check_answer)

    def do_POST(self):
        remaining = int(self.headers["Content-Length"])
        while remaining:
            remaining -= len(self.rfile.read(min(remaining, MiB)))
        self._answer(*self.server.upload_answer)

    def _answer(self, status, headers, body):
        self.server.seen.append(self.command)
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeCollector)
    server.check_answer = (200, {}, VALID_TOKEN)
    server.upload_answer = (201, {}, b"{}")
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_checksum_mismatch_is_loud(shell, fake_server, tmp_path):
    path = random_file(tmp_path / "a.log", 300 * 1024)
    fake_server.upload_answer = (201, {}, json.dumps({
        "id": 7, "ticket": 1, "name": "a.log", "size": 300 * 1024,
        "sha256": "0" * 64, "md5": "0" * 32}).encode())
    url = f"http://127.0.0.1:{fake_server.server_port}"

    done = run(shell, "-f", str(path), "-t", "T", "-u", url)

    assert done.returncode == 6
    assert "CHECKSUM MISMATCH" in done.stderr
    assert sha256_of(path) in done.stderr and "0" * 64 in done.stderr
    assert "OK:" not in done.stdout


def test_non_json_server_error_is_readable(shell, fake_server, tmp_path):
    path = random_file(tmp_path / "a.log", 1000)
    fake_server.upload_answer = (502, {"Content-Type": "text/html"},
                                 b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    url = f"http://127.0.0.1:{fake_server.server_port}"

    done = run(shell, "-f", str(path), "-t", "T", "-u", url)

    assert done.returncode == 4
    assert "server error (HTTP 502): 502 Bad Gateway" in done.stderr


def test_redirect_is_not_followed(shell, fake_server, tmp_path):
    """An http to https redirect would turn the POST into a GET: say where to go instead."""
    path = random_file(tmp_path / "a.log", 1000)
    fake_server.check_answer = (301, {"Location": "https://logs.example.com/"}, b"")
    url = f"http://127.0.0.1:{fake_server.server_port}"

    done = run(shell, "-f", str(path), "-t", "T", "-u", url)

    assert done.returncode == 1
    assert "redirect to https://logs.example.com/" in done.stderr
    assert fake_server.seen == ["GET"]


def test_progress_bar_on_a_terminal(live_server, factory, platform, dbsession, tmp_path):
    ticket = factory.ticket(platform)
    path = random_file(tmp_path / "a.log", 3 * MiB)
    master, slave = pty.openpty()
    with subprocess.Popen(["sh", str(SCRIPT), "-f", str(path), "-t", ticket.token, "-u",
                           live_server], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=slave, env={"PATH": os.environ["PATH"]}) as proc:
        os.close(slave)
        terminal = b""
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the script and curl have closed the terminal
                break
            if not data:
                break
            terminal += data
        stdout = proc.stdout.read().decode()
    os.close(master)

    assert proc.returncode == 0, terminal.decode(errors="replace")
    # curl's bar is asked for (--progress-bar), but the chunk's size is a header curl does
    # not read, and the 204 has no body: its "100.0%" came from the old 200's JSON, and
    # whether it draws "#" before a local chunk is stored is timing. The script's own
    # line is always there.
    assert b"Sent 3.0 MiB of 3.0 MiB (100%)" in terminal
    assert not list(tmp_path.glob("a.log.upload-sum.*"))
    assert "OK: the server has exactly this file." in stdout
    assert archive_count(dbsession) == 1


# --- the script itself ----------------------------------------------------------------

@pytest.mark.parametrize("checker", [["sh", "-n"], ["bash", "--posix", "-n"],
                                     ["shellcheck", "-s", "sh"]])
def test_script_is_clean_posix_sh(checker):
    if shutil.which(checker[0]) is None:
        pytest.skip(f"{checker[0]} is not installed")
    done = subprocess.run([*checker, str(SCRIPT)], check=False, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# --- resumable uploads (tus) ------------------------------------------------------------

FAST = {"UPLOADER_BACKOFF_MAX": "1"}


def archives_of(session, ticket):
    session.rollback()
    return session.scalars(select(Archive).where(Archive.ticket_id == ticket.id)).all()


def test_chunks_and_progress(shell, live_server, app, factory, platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=3)
    size = 3 * MiB + MiB // 2
    path = random_file(tmp_path / "logs.tgz", size)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server,
               "--chunk-size", "1M")

    assert done.returncode == 0, done.stderr
    assert app.methods() == ["GET", "OPTIONS", "POST", "PATCH", "PATCH", "PATCH", "PATCH",
                             "GET"]
    assert "Upload started: " in done.stderr and "--resume" in done.stderr
    assert "in chunks of 1.0 MiB" in done.stderr
    assert "Sent 3.0 MiB of 3.5 MiB (85%)" in done.stderr
    [row] = archives_of(dbsession, ticket)
    assert (row.sha256, row.size, row.name) == (sha256_of(path), size, "logs.tgz")
    assert f"Uploaded archive {row.id} to ticket {ticket.number}" in done.stdout
    assert "time:   20" in done.stdout
    assert attempts_of(dbsession, ticket) == 2  # one attempt for the upload, not per chunk
    assert "state=done" in (tmp_path / "logs.tgz.upload").read_text()


def test_single_request_option(shell, live_server, app, factory, platform, dbsession,
                               tmp_path):
    ticket = factory.ticket(platform)
    path = random_file(tmp_path / "a.log", 300 * 1024)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server,
               "--single-request")

    assert done.returncode == 0, done.stderr
    assert app.methods() == ["GET", "POST"]
    assert app.requests[1][1] == "/api/v1/archives/"
    assert len(archives_of(dbsession, ticket)) == 1


def _kill_at_patch(app, proc_box, number):
    """Kill the script (and its curl) when its ``number``-th PATCH has reached the app:
    that chunk is stored, the client never hears of it."""
    seen = []

    def hook(method, path):
        if method == "PATCH":
            seen.append(path)
            if len(seen) == number:
                os.killpg(proc_box[0].pid, 9)
    app.hook = hook


def _killed_run(shell, app, args, number, tmp_path):
    """Run the script with 1 MiB chunks, kill it at its ``number``-th PATCH and wait until
    the server has stored that chunk."""
    box = []
    _kill_at_patch(app, box, number)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir(exist_ok=True)
    proc = start(shell, *args, env={**FAST, "TMPDIR": str(tmpdir)})
    box.append(proc)
    _, stderr = proc.communicate(timeout=120)
    app.hook = None
    assert proc.returncode == -9, stderr
    # kill -9 runs no trap: the script makes no temporary directory to leave behind.
    assert list(tmpdir.iterdir()) == []
    url = stderr.split("Upload started: ", 1)[1].split()[0]
    token = args[args.index("-t") + 1]
    for _ in range(200):
        request = urllib.request.Request(url, method="HEAD", headers={
            "Tus-Resumable": "1.0.0", "Upload-Token": token})
        with urllib.request.urlopen(request, timeout=30) as answer:
            if answer.headers["Upload-Offset"] == str(number * MiB):
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the server did not store the chunk of the killed request")
    return stderr


def test_rerun_resumes_after_the_script_was_killed(shell, live_server, app, factory,
                                                   platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    size = 4 * MiB + 5
    path = random_file(tmp_path / "big.tar", size)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server, "-c", "1M")

    _killed_run(shell, app, args, 2, tmp_path)
    # What the killed run left: its state file and its hash output, nothing in TMPDIR.
    assert len(list(tmp_path.glob("big.tar.upload-sum.*"))) == 1
    state = (tmp_path / "big.tar.upload").read_text()
    assert "url=" + live_server + "/api/v1/uploads/" in state
    assert ticket.token not in state  # only a checksum of it
    app.requests.clear()

    done = run(shell, *args)

    assert done.returncode == 0, done.stderr
    assert "The server has 2097152 of 4194309 bytes." in done.stderr
    # No token check (the upload holds its attempt), no new upload: HEAD, then the rest.
    assert app.methods() == ["HEAD", "PATCH", "PATCH", "PATCH", "GET"]
    [row] = archives_of(dbsession, ticket)
    assert row.sha256 == sha256_of(path) and row.size == size
    assert attempts_of(dbsession, ticket) == 1
    assert "state=done" in (tmp_path / "big.tar.upload").read_text()
    # The killed run's hash output (beside the file) is gone with the run that followed.
    assert not list(tmp_path.glob("big.tar.upload-sum.*"))


def test_resume_option_with_the_printed_url(shell, live_server, app, factory, platform,
                                            dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=1)  # the upload takes the last attempt
    path = random_file(tmp_path / "big.tar", 3 * MiB)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server, "-c", "1M")
    stderr = _killed_run(shell, app, args, 1, tmp_path)
    url = stderr.split("Upload started: ", 1)[1].split()[0]
    (tmp_path / "big.tar.upload").unlink()

    done = run(shell, *args, "--resume", url)

    assert done.returncode == 0, done.stderr
    assert "OK: the server has exactly this file." in done.stdout
    assert len(archives_of(dbsession, ticket)) == 1
    assert attempts_of(dbsession, ticket) == 0


def test_a_state_file_for_another_file_is_not_used(shell, live_server, app, factory,
                                                   platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=3)
    path = random_file(tmp_path / "big.tar", 2 * MiB)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server, "-c", "1M")
    _killed_run(shell, app, args, 1, tmp_path)
    random_file(path, 2 * MiB)  # same name and size, other bytes
    app.requests.clear()

    done = run(shell, *args)

    assert done.returncode == 0, done.stderr
    assert app.methods()[:3] == ["GET", "OPTIONS", "POST"]
    [row] = archives_of(dbsession, ticket)
    assert row.sha256 == sha256_of(path)


def test_an_upload_gone_from_the_server_starts_again(shell, live_server, app, factory,
                                                     platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    path = random_file(tmp_path / "big.tar", 2 * MiB + 1)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server, "-c", "1M")
    _killed_run(shell, app, args, 1, tmp_path)
    url = (tmp_path / "big.tar.upload").read_text().split("url=")[1].split()[0]
    request = urllib.request.Request(url, method="DELETE", headers={
        "Tus-Resumable": "1.0.0", "Upload-Token": ticket.token})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 204  # terminated: the attempt is given back
    assert attempts_of(dbsession, ticket) == 2

    done = run(shell, *args)

    assert done.returncode == 0, done.stderr
    assert "cannot be resumed (the server no longer has it (HTTP 404))" in done.stderr
    assert len(archives_of(dbsession, ticket)) == 1
    assert attempts_of(dbsession, ticket) == 1


def test_a_ticket_resolved_mid_upload_stops_it(shell, live_server, app, factory, platform,
                                               dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    path = random_file(tmp_path / "big.tar", 2 * MiB + 1)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server, "-c", "1M")
    _killed_run(shell, app, args, 1, tmp_path)
    dbsession.rollback()
    dbsession.get(Ticket, ticket.id).resolved = True
    dbsession.commit()

    done = run(shell, *args)

    assert done.returncode == 3, done.stderr
    assert "can no longer be used" in done.stderr
    assert archives_of(dbsession, ticket) == []


class CuttingProxy:
    """A TCP proxy in front of the live server that breaks one connection, as a VPN that
    drops does: ``cut = (n, "request", nbytes)`` closes the n-th connection after n bytes
    from the client; ``(n, "response", 0)`` lets the request through and drops the answer.
    ``refuse_from = n`` refuses every connection from the n-th on."""

    def __init__(self, port):
        self.port, self.count = port, 0
        self.cut, self.refuse_from = None, None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.count += 1
            if self.refuse_from is not None and self.count >= self.refuse_from:
                client.close()
                continue
            rule = self.cut if self.cut and self.cut[0] == self.count else None
            upstream = socket.create_connection(("127.0.0.1", self.port))
            for args in ((client, upstream, rule, "request"),
                         (upstream, client, rule, "response")):
                thread = threading.Thread(target=self._pump, args=args, daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, source, target, rule, direction):
        passed = 0
        try:
            while data := source.recv(65536):
                if rule and rule[1] == direction and passed + len(data) > rule[2]:
                    break
                target.sendall(data)
                passed += len(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.fixture
def proxy(live_server):
    proxy = CuttingProxy(int(live_server.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


def test_a_dropped_connection_is_resumed(shell, proxy, app, factory, platform, dbsession,
                                         tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    size = 3 * MiB + 3
    path = random_file(tmp_path / "big.tar", size)
    # Connections: token check, OPTIONS, creation, first chunk (cut half-way), ...
    proxy.cut = (5, "request", MiB // 2)

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", proxy.url, "-c", "1M",
               env=FAST)

    assert done.returncode == 0, done.stderr
    assert f"the connection failed at byte {MiB}" in done.stderr
    assert "retry 1 of 20 in 1s" in done.stderr
    # The second chunk's PATCH never reached the app (waitress drops a partial body).
    assert app.methods() == ["GET", "OPTIONS", "POST", "PATCH", "HEAD", "PATCH", "PATCH",
                             "PATCH", "GET"]
    [row] = archives_of(dbsession, ticket)
    assert row.sha256 == sha256_of(path) and row.size == size
    assert attempts_of(dbsession, ticket) == 1


def test_a_lost_answer_to_the_last_chunk(shell, proxy, app, factory, platform, dbsession,
                                         tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    path = random_file(tmp_path / "big.tar", MiB + 10)
    proxy.cut = (5, "response", 0)  # the last chunk is stored, its answer lost

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", proxy.url, "-c", "1M",
               env=FAST)

    assert done.returncode == 0, done.stderr
    # HEAD finds the whole file there; an empty PATCH at the end is answered 204 with the
    # archive's headers, and GET gives the receipt.
    assert app.methods() == ["GET", "OPTIONS", "POST", "PATCH", "PATCH", "HEAD", "PATCH",
                             "GET"]
    [row] = archives_of(dbsession, ticket)
    assert f"Uploaded archive {row.id} to ticket" in done.stdout
    assert "OK: the server has exactly this file." in done.stdout
    assert attempts_of(dbsession, ticket) == 1


def test_gives_up_after_the_retries_and_says_how_to_resume(shell, proxy, app, factory,
                                                           platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    path = random_file(tmp_path / "big.tar", 2 * MiB)
    proxy.refuse_from = 5  # the server is gone after the first chunk

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", proxy.url, "-c", "1M",
               "--retries", "2", env=FAST)

    assert done.returncode == 5, done.stderr
    assert f"Gave up after 2 retries at byte {MiB} of {2 * MiB}" in done.stderr
    assert "run the same command again to resume" in done.stderr
    assert (tmp_path / "big.tar.upload").exists()

    proxy.refuse_from = None
    again = run(shell, "-f", str(path), "-t", ticket.token, "-u", proxy.url, "-c", "1M")
    assert again.returncode == 0, again.stderr
    assert len(archives_of(dbsession, ticket)) == 1
    assert attempts_of(dbsession, ticket) == 1


def test_falls_back_to_one_post_without_tus(shell, fake_server, tmp_path):
    """A server that does not answer OPTIONS with Tus-Version (as the original does not)
    gets the single POST."""
    path = random_file(tmp_path / "a.log", 1000)
    fake_server.upload_answer = (201, {}, json.dumps({
        "id": 3, "ticket": 1, "name": "a.log", "size": 1000, "md5": None,
        "sha256": sha256_of(path)}).encode())
    url = f"http://127.0.0.1:{fake_server.server_port}"

    done = run(shell, "-f", str(path), "-t", "T", "-u", url)

    assert done.returncode == 0, done.stderr
    assert "does not take resumable uploads" in done.stderr
    assert fake_server.seen == ["GET", "POST"]  # OPTIONS got 501 from the stdlib server


@pytest.mark.parametrize("args, message", [
    (["--chunk-size", "12X"], "--chunk-size takes a number of bytes"),
    (["--chunk-size", "100"], "--chunk-size takes a number of bytes"),
    (["--chunk-size", "8G"], "--chunk-size takes a number of bytes"),
    (["--retries", "many"], "--retries takes a number"),
    (["--resume", "x", "--single-request"], "cannot be --single-request"),
])
def test_bad_tus_options(shell, args, message):
    done = run(shell, "-f", "x", "-t", "t", "-u", "http://h", *args)
    assert done.returncode == 2
    assert message in done.stderr


# --- a file that was already uploaded -----------------------------------------------------

def _uploaded_once(shell, live_server, app, factory, platform, tmp_path):
    ticket = factory.ticket(platform, attempts=3)
    path = random_file(tmp_path / "once.tgz", 200 * 1024 + 3)
    args = ("-f", str(path), "-t", ticket.token, "-u", live_server)
    first = run(shell, *args)
    assert first.returncode == 0, first.stderr
    app.requests.clear()
    return ticket, path, args


def test_a_second_run_without_a_terminal_sends_nothing(shell, live_server, app, factory,
                                                       platform, dbsession, tmp_path):
    ticket, path, args = _uploaded_once(shell, live_server, app, factory, platform, tmp_path)
    [row] = archives_of(dbsession, ticket)

    again = run(shell, *args)

    assert again.returncode == 0, again.stderr
    assert app.requests == []  # not even the token check
    assert f"already uploaded (verified), as archive {row.id}" in again.stderr
    assert f"Uploaded archive {row.id} to ticket {ticket.number}" in again.stdout
    assert f"sha256: {row.sha256} (server)" in again.stdout
    assert "no terminal to ask on" in again.stderr and "--again" in again.stderr
    assert attempts_of(dbsession, ticket) == 2

    # --again uploads it once more, and the record then names the new archive.
    forced = run(shell, *args, "--again")
    assert forced.returncode == 0, forced.stderr
    assert "OK: the server has exactly this file." in forced.stdout
    first, second = sorted(r.id for r in archives_of(dbsession, ticket))
    assert first == row.id
    assert f"archive={second}" in (tmp_path / "once.tgz.upload").read_text()
    assert attempts_of(dbsession, ticket) == 1


def test_a_changed_file_of_the_same_size_is_not_taken_for_the_uploaded_one(
        shell, live_server, app, factory, platform, dbsession, tmp_path):
    ticket, path, args = _uploaded_once(shell, live_server, app, factory, platform, tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # only the last block differs
    path.write_bytes(bytes(data))

    again = run(shell, *args)

    assert again.returncode == 0, again.stderr
    assert "already uploaded" not in again.stderr
    assert len(archives_of(dbsession, ticket)) == 2


def _run_on_a_terminal(args, answer):
    """The script with a terminal of its own as controlling terminal (/dev/tty), stdin
    closed; ``answer`` is typed once it asks."""
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)

    def own_terminal():
        os.setsid()
        os.close(os.open(slave_name, os.O_RDWR))  # the session's controlling terminal

    with subprocess.Popen(["sh", str(SCRIPT), *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          preexec_fn=own_terminal, env={"PATH": os.environ["PATH"]}) as proc:
        # The slave stays open here until the answer is typed: with no slave open (the
        # script not yet asking) the master would read EIO.
        terminal = b""
        while b"[y/N]" not in terminal:
            ready, _, _ = io_select.select([master], [], [], 60)
            assert ready, (terminal, proc.poll())
            terminal += os.read(master, 4096)
        os.write(master, answer.encode() + b"\n")
        stdout, stderr = proc.communicate(timeout=120)
    os.close(slave)
    os.close(master)
    return proc.returncode, terminal.decode(), stdout.decode(), stderr.decode()


@pytest.mark.parametrize("answer, archives", [("", 1), ("n", 1), ("y", 2)])
def test_a_second_run_on_a_terminal_asks(live_server, app, factory, platform, dbsession,
                                         tmp_path, answer, archives):
    ticket, path, args = _uploaded_once(["sh"], live_server, app, factory, platform,
                                        tmp_path)

    code, terminal, stdout, stderr = _run_on_a_terminal(args, answer)

    assert code == 0, stderr
    assert "Upload it again?" in terminal and "another upload attempt" in terminal
    assert "Uploaded archive" in stdout
    assert len(archives_of(dbsession, ticket)) == archives
    assert attempts_of(dbsession, ticket) == 3 - archives
    if archives == 1:
        assert "Not uploaded again." in stderr and app.requests == []


def test_the_receipt_headers_stand_in_when_its_get_fails(shell, live_server, app, factory,
                                                         platform, dbsession, tmp_path):
    ticket = factory.ticket(platform, attempts=2)
    path = random_file(tmp_path / "h.tgz", 100_000)

    def fail_the_receipt(method, request_path):
        if method == "GET" and request_path.startswith("/api/v1/uploads/"):
            return "503 Service Unavailable", b"down for a moment"
        return None
    app.hook = fail_the_receipt

    done = run(shell, "-f", str(path), "-t", ticket.token, "-u", live_server)

    assert done.returncode == 0, done.stderr
    [row] = archives_of(dbsession, ticket)
    assert "the full receipt could not be read (HTTP 503: down for a moment)" in done.stderr
    assert f"Uploaded archive {row.id}\n" in done.stdout
    assert f"sha256: {row.sha256} (server)" in done.stdout
    assert "OK: the server has exactly this file." in done.stdout
