"""Crash tests for tus uploads: a client or a real ``collector serve`` dies mid-upload.

Each test runs its own server process (serverproc.Server: own DATA_DIR and database, on
SQLite and on PostgreSQL) and kills with SIGKILL, so nothing in the dying process cleans
up. After the kill a new tuspy uploader asks the offset (HEAD) on the same URL and
finishes. Then, whatever the kill point:

* the archive's bytes are the file's (sha256 of the stored file and of a staff download,
  and the sha256/md5 in the database: after a restart the server re-hashes the partial
  file, since its running hashes died with it);
* the ticket's attempts moved exactly once;
* no unfinished upload row is left, and no row points to a missing file;
* ``collector purge --dry-run`` names exactly what ``collector purge`` then removes, and
  afterwards every file on disk belongs to a row;
* the server logged no traceback.

Server kill points: between chunks; while a PATCH body is being received; while a chunk
is being appended (bytes past the committed offset in the file); when the last chunk is
fsynced but not recorded; after the archive file is in place but before the database
commit; after the commit but before the answer. The last four are reached with the pause
points of serverproc (the server waits there; the test kills it).
"""

import base64
import concurrent.futures
import fcntl
import hashlib
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.parse

import pytest
from serverproc import (
    CHUNK_TYPE,
    MiB,
    assert_rows_have_files,
    create,
    files_under,
    head,
    patch,
    purge_leaves_no_orphan,
    running_place,
    tus_headers,
)
from sqlalchemy import select
from tusclient import client as tus_client

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)
from collector.archives.models import Archive, TusUpload

pytestmark = pytest.mark.slow

SIZE = 4 * MiB + 12345


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    with running_place(request.param, tmp_path) as server:
        yield server


@pytest.fixture
def body():
    return os.urandom(SIZE)


# --- tus over plain HTTP (helpers in serverproc) -------------------------------------

def uploader(server, token, body, path=None, chunk_size=MiB):
    """A new tuspy uploader: for ``path`` it asks the offset (HEAD), as a resuming client."""
    client = tus_client.TusClient(f"{server.base}/api/v1/uploads/",
                                  headers={"Upload-Token": token})
    url = f"{server.base}{path}" if path else None
    return client.uploader(file_stream=io.BytesIO(body), url=url, chunk_size=chunk_size,
                           metadata={"filename": "crash.bin"})


def partial_file(server, path):
    upload_id = path.rsplit("/", 1)[1]
    with server.session() as session:
        key = session.get(TusUpload, upload_id).storage_key
    return server.data_dir / "uploads" / key


def committed_offset(server, path):
    with server.session() as session:
        return session.get(TusUpload, path.rsplit("/", 1)[1]).offset


# --- what must hold after every crash (helpers in serverproc) ---------------------------

def assert_finished_once(server, ticket, path, body, orphans=()):
    """The upload is one archive with the file's bytes, one attempt spent, nothing left
    over but the expected ``orphans`` (removed by purge)."""
    token, sha256 = ticket["token"], hashlib.sha256(body).hexdigest()
    state = head(server, token, path)
    assert int(state["upload-offset"]) == len(body)
    archive_id = int(state["upload-archive-id"])
    listed = server.archives_of(ticket["number"])
    assert [a["id"] for a in listed] == [archive_id]
    assert (listed[0]["size"], listed[0]["sha256"], listed[0]["md5"]) == (
        len(body), sha256, hashlib.md5(body).hexdigest())
    with server.session() as session:
        key = session.get(Archive, archive_id).storage_key
        unfinished = session.scalars(select(TusUpload).where(
            TusUpload.finished_at.is_(None))).all()
    assert unfinished == []
    stored = server.data_dir / "archives" / key[:2] / key
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha256
    assert server.download_sha256(archive_id) == sha256
    assert server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"] == \
        ticket["attempts"] - 1
    assert_rows_have_files(server)
    assert purge_leaves_no_orphan(server) == sorted(orphans)
    assert server.download_sha256(archive_id) == sha256  # purge left the archive alone
    assert files_under(server.data_dir / "tmp") == []
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]


# --- 1. the client dies ------------------------------------------------------------------

CLIENT = textwrap.dedent("""\
    import http.client, io, sys, time, urllib.parse
    from tusclient import client as tus_client

    base, token, source, mode, stop = sys.argv[1:6]
    data, stop = open(source, "rb").read(), int(stop)
    uploader = tus_client.TusClient(base + "/api/v1/uploads/", headers={
        "Upload-Token": token}).uploader(file_stream=io.BytesIO(data), chunk_size=128 * 1024,
                                         metadata={"filename": "crash.bin"})
    uploader.upload_chunk()
    print("URL", uploader.url, flush=True)
    if mode == "streaming":
        # chunk after chunk; the test kills this process at some point past `stop`
        while uploader.offset < len(data):
            uploader.upload_chunk()
            print("OFFSET", uploader.offset, flush=True)
        raise SystemExit("finished before being killed")
    uploader.upload(stop_at=stop)
    # then half of the next chunk's body, and the process is killed mid-request
    url, offset = urllib.parse.urlsplit(uploader.url), uploader.offset
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.putrequest("PATCH", url.path)
    for name, value in {"Tus-Resumable": "1.0.0", "Upload-Token": token,
                        "Upload-Offset": str(offset), "Content-Length": str(1024 * 1024),
                        "Content-Type": "application/offset+octet-stream"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(data[offset:offset + 512 * 1024])
    print("IN-FLIGHT", offset, flush=True)
    time.sleep(600)
""")


def _settled_offset(server, token, path, quiet=0.5, timeout=30):
    """The upload's offset once it stops moving: a streaming client killed at once may
    have sent a whole chunk that the server is still appending (waitress hands a request
    to the app only once its body has arrived), which moved the offset after a first HEAD
    under load."""
    offset = int(head(server, token, path)["upload-offset"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(quiet)
        again = int(head(server, token, path)["upload-offset"])
        if again == offset:
            break
        offset = again
    return offset


@pytest.mark.parametrize("mode", ["half-chunk", "streaming"])
def test_client_killed_mid_upload_then_a_new_client_finishes(server, body, tmp_path, mode):
    server.start()
    ticket = server.ticket(101)
    source = tmp_path / "upload.bin"
    source.write_bytes(body)
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    stop = 3 * MiB // 2
    client = subprocess.Popen([sys.executable, str(script), server.base, ticket["token"],
                               str(source), mode, str(stop)], stdout=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        path = urllib.parse.urlsplit(client.stdout.readline().split()[1]).path
        for line in client.stdout:
            word, value = line.split()
            if word == "IN-FLIGHT" or (word == "OFFSET" and int(value) >= stop):
                break
        else:
            pytest.fail(f"the client ended first ({client.wait()})")
        # kill -9 while a chunk is on the wire (half-chunk: certainly; streaming: almost)
        os.kill(client.pid, signal.SIGKILL)
    finally:
        if client.poll() is None:
            os.kill(client.pid, signal.SIGKILL)
        client.wait(30)
        client.stdout.close()
    offset = _settled_offset(server, ticket["token"], path)
    assert offset >= stop if mode == "streaming" else offset == stop
    resumed = uploader(server, ticket["token"], body, path)
    assert resumed.offset == offset
    resumed.upload()
    assert_finished_once(server, ticket, path, body)


# --- 2. the server dies ------------------------------------------------------------------

def send_half_a_patch(server, token, path, offset, data):
    """Headers and half the body of a PATCH; the open socket (the server is receiving)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head_lines = [f"PATCH {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
                  "Tus-Resumable: 1.0.0", f"Upload-Token: {token}",
                  f"Upload-Offset: {offset}", f"Content-Type: {CHUNK_TYPE}",
                  f"Content-Length: {len(data)}"]
    sock.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode() + data[:len(data) // 2])
    return sock


POINTS = ["between-chunks", "receiving-body", "append", "finish", "vote", "committed"]
# The files purge finds after each kill point: the archive file published in a
# transaction that never committed, and the partial file of an upload whose archive
# committed just before the crash (its removal was to follow the commit).
ORPHANS = {"vote": "archives", "committed": "uploads"}


@pytest.mark.parametrize("point", POINTS)
def test_server_killed_then_restarted_the_upload_resumes(server, body, point):
    pause = point if point in ("append", "finish", "vote", "committed") else None
    server.start(pause_at=pause)
    ticket = server.ticket(202)
    token = ticket["token"]
    first = uploader(server, token, body, chunk_size=256 * 1024)
    first.upload(stop_at=MiB)
    path = urllib.parse.urlsplit(first.url).path
    offset = first.offset
    assert offset == MiB
    # The chunk in flight at the kill: 2 MiB (append), else the rest (the last chunk).
    chunk = body[offset:offset + 2 * MiB] if point == "append" else body[offset:]
    sock = None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = None
        if point == "receiving-body":
            sock = send_half_a_patch(server, token, path, offset, chunk)
            time.sleep(0.3)  # let waitress take in what was sent
        elif pause:
            pending = pool.submit(patch, server, token, path, offset, chunk, 60)
            where = server.wait_paused()
            assert where["point"] == point
            if point == "append":
                # bytes past the committed offset are in the file, not yet committed
                assert partial_file(server, path).stat().st_size >= offset + MiB
                assert committed_offset(server, path) == offset
        server.kill()
        if pending is not None:
            with pytest.raises((OSError, http.client.HTTPException)):
                pending.result(30)  # the client got no answer
    if sock is not None:
        sock.close()
    server.start()
    expected = len(body) if point == "committed" else offset
    assert int(head(server, token, path)["upload-offset"]) == expected
    resumed = uploader(server, token, body, path)
    assert resumed.offset == expected
    resumed.upload()
    with server.session() as session:
        archive = session.scalars(select(Archive)).one()
        orphans = []
        if point == "vote":
            keys = [p.name for p in (server.data_dir / "archives").glob("*/*")]
            orphans = [f"archives/{k[:2]}/{k}" for k in keys if k != archive.storage_key]
            assert len(orphans) == 1
        elif point == "committed":
            orphans = files_under(server.data_dir / "uploads")
            assert len(orphans) == 1
            orphans = [f"uploads/{name}" for name in orphans]
    assert_finished_once(server, ticket, path, body, orphans)


# --- 3. failed and refused requests leave no descriptor open -------------------------------

def test_failed_and_refused_requests_leave_no_descriptor_open(server, body):
    server.start()
    ticket = server.ticket(303)
    token = ticket["token"]
    path = create(server, token, len(body))
    assert patch(server, token, path, 0, body[:MiB])[0] == 204
    partial = partial_file(server, path)
    bad = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()

    def batch():
        statuses = [
            patch(server, token, path, 5, body[5:10])[0],  # wrong offset
            patch(server, token, path, MiB, b"x" * len(body))[0],  # past Upload-Length
            patch(server, token, path, MiB, body[MiB:2 * MiB],
                  **{"Upload-Checksum": bad})[0],
            server.request("PATCH", path, b"abc", tus_headers(
                token, **{"Upload-Offset": str(MiB), "Content-Type": "text/plain"}))[0],
            patch(server, token, "/api/v1/uploads/" + "x" * 32, 0, b"abc")[0],
            server.request("POST", "/api/v1/uploads/", b"abc", tus_headers(
                token, **{"Upload-Length": "10", "Content-Type": CHUNK_TYPE,
                          "Upload-Checksum": bad}))[0],
        ]
        # another process writing to the upload: the lock is refused
        with open(partial, "rb") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails if a lock leaked
            statuses.append(patch(server, token, path, MiB, body[MiB:2 * MiB])[0])
            statuses.append(server.request("DELETE", path, headers=tus_headers(token))[0])
        return statuses

    def open_files_settle():
        # waitress closes a request's body spool just after sending the answer
        deadline = time.monotonic() + 10
        while (files := server.open_files()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return files

    assert batch() == [409, 400, 460, 415, 404, 460, 409, 409]
    assert open_files_settle() == []
    for _ in range(3):
        batch()
    # two PATCHes at once: one writes, the other is refused (or finds the offset moved)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: patch(server, token, path, MiB,
                                                body[MiB:3 * MiB])[0], range(2)))
    assert sorted(results) == [204, 409]
    assert open_files_settle() == []
    resumed = uploader(server, token, body, path)
    assert resumed.offset == 3 * MiB
    resumed.upload()
    assert_finished_once(server, ticket, path, body)
