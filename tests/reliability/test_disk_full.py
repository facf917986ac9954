"""Disk full: a real ``collector serve`` whose DATA_DIR is a 64 MiB tmpfs of its own.

The test mounts the filesystem itself (it needs root, as in CI; elsewhere it is skipped
and says why) and fills it with a file of its own to make the disk run out at chosen
moments. What it shows:

* an upload that cannot fit is refused before it starts, 507 with a JSON ``detail``: a
  tus creation by its ``Upload-Length``, a single POST by its ``Content-Length``; no row,
  no file, no attempt spent;
* a disk that fills while a tus chunk is written (the server waits at serverproc's
  ``append`` pause point while the test eats the space) answers 507 with a JSON
  ``detail``: the committed offset stays, the partial file is cut back to it, and once
  space returns the same upload resumes and finishes byte-identical;
* a single POST whose staging runs out of space answers 507 and leaves no staged file;
* the body's own spool in DATA_DIR/tmp counts as space the upload holds: bodies of 60 %
  and 85 % of the usable space are stored (single POST and one tus PATCH; both got 507
  when the spool was counted against them), the disk never below the reserve meanwhile;
  one whose copy cannot fit beside its spool is 507 before a byte is written;
* what was stored before keeps its sha256, no row points to a missing file, the server
  logs no traceback.
"""

import base64
import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
import urllib.parse

import pytest
from serverproc import MiB, Server, database
from serverproc import receipt as upload_receipt
from sqlalchemy import select

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)
from collector.archives.models import Archive, TusUpload
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

DISK = 64 * MiB
RESERVE = 4 * MiB
CHUNK_TYPE = "application/offset+octet-stream"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs mounted for this test, unmounted afterwards whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("disk-full tests mount a tmpfs of their own, which needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK},mode=0700",
                              "tmpfs", str(mountpoint)], capture_output=True, text=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            # Something still holds it open: detach it now, the kernel frees it later.
            subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path, small_disk):
    # The database and the server's log stay off the small disk: only DATA_DIR is on it.
    with database(request.param, tmp_path / "db") as db_url:
        server = Server(tmp_path / "server", db_url)
        server.dir.mkdir()
        server.data_dir = small_disk / "data"
        server.extra_env = {"STORAGE_RESERVE": str(RESERVE), "UPLOAD_MAX_SIZE": "1GiB"}
        server.setup()
        try:
            yield server
        finally:
            server.stop()


# --- helpers -------------------------------------------------------------------------------

def free_bytes(path):
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@contextlib.contextmanager
def filler(disk, leave):
    """A file that takes all but ``leave`` bytes of the disk until the block ends."""
    path = disk / "filler"
    size = free_bytes(disk) - leave
    assert size > 0, (free_bytes(disk), leave)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)
    finally:
        os.close(fd)
    try:
        yield path
    finally:
        path.unlink()


def post_archive(server, token, body, name="a.bin", length=None):
    headers = {"Upload-Token": token, "Content-Type": "application/octet-stream",
               "Content-Length": str(len(body) if length is None else length)}
    return server.request("POST", f"/api/v1/archives/?filename={name}", body, headers,
                          timeout=60)


def post_multipart(server, token, body, name="a.bin"):
    boundary = "disk-full-boundary"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode() + body + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Upload-Token": token, "Content-Length": str(len(data)),
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return server.request("POST", "/api/v1/archives/", data, headers, timeout=60)


def headers_only(server, token, length):
    """Send a single POST's headers only and read the answer: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall((f"POST /api/v1/archives/?filename=big.bin HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{server.port}\r\nUpload-Token: {token}\r\n"
                      f"Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {length}\r\n\r\n").encode())
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return (response.status, {k.lower(): v for k, v in response.getheaders()},
                    response.read())
        finally:
            response.close()


def tus_headers(token, **extra):
    return {"Tus-Resumable": "1.0.0", "Upload-Token": token, **extra}


def create(server, token, length):
    metadata = "filename " + base64.b64encode(b"big.bin").decode()
    return server.request("POST", "/api/v1/uploads/", headers=tus_headers(
        token, **{"Upload-Length": str(length), "Upload-Metadata": metadata}))


def patch(server, token, path, offset, data):
    return server.request("PATCH", path, data, tus_headers(
        token, **{"Upload-Offset": str(offset), "Content-Type": CHUNK_TYPE}), timeout=60)


def head_offset(server, token, path):
    status, headers, data = server.request("HEAD", path, headers=tus_headers(token))
    assert status == 200, (status, data)
    return int(headers["upload-offset"])


def assert_clean_507(status, headers, data):
    assert status == 507, (status, data[:500])
    assert headers["content-type"].startswith("application/json")
    detail = json.loads(data)["detail"]
    assert detail and "Traceback" not in detail
    return detail


def stored_sha256(server):
    """{archive id: sha256 of its file on disk} for every archive row."""
    result = {}
    with server.session() as session:
        for archive in session.scalars(select(Archive)):
            path = server.data_dir / "archives" / archive.storage_key[:2] / archive.storage_key
            result[archive.id] = hashlib.sha256(path.read_bytes()).hexdigest()
            assert result[archive.id] == archive.sha256, f"archive {archive.id} damaged"
    return result


def attempts(server, ticket_id):
    with server.session() as session:
        return session.get(Ticket, ticket_id).attempts


def staged_files(server):
    return sorted(p.name for p in (server.data_dir / "tmp").iterdir()
                  if not p.name.startswith(".probe"))


def assert_no_traceback(server):
    assert "Traceback" not in server.log(), server.log()[-3000:]


# --- the tests -----------------------------------------------------------------------------

def test_uploads_that_cannot_fit_are_refused_before_they_start(server, small_disk):
    server.start()
    ticket = server.ticket(7001, attempts=5)
    first = os.urandom(2 * MiB)
    status, _, data = post_archive(server, ticket["token"], first)
    assert status == 201, data
    before = stored_sha256(server)
    assert list(before.values()) == [hashlib.sha256(first).hexdigest()]
    left = attempts(server, ticket["id"])

    # tus: the Upload-Length alone decides, before any byte is sent.
    status, headers, data = create(server, ticket["token"], free_bytes(small_disk))
    assert "free space" in assert_clean_507(status, headers, data)
    with server.session() as session:
        assert session.scalars(select(TusUpload)).all() == []
    assert list((server.data_dir / "uploads").iterdir()) == []

    # Single POST: the body fits in waitress's spool (with the reserve) but its archive
    # would not fit beside it; the app refuses it before copying a byte into staging.
    size = free_bytes(small_disk) - RESERVE - MiB
    status, headers, data = post_archive(server, ticket["token"], os.urandom(size))
    assert "free space" in assert_clean_507(status, headers, data)

    # Single POST bigger than the whole disk: it could not even be spooled, so the answer
    # comes at the headers, before the client sends a byte of the body.
    assert_clean_507(*headers_only(server, ticket["token"], DISK + 4 * MiB))

    assert attempts(server, ticket["id"]) == left
    assert stored_sha256(server) == before
    assert staged_files(server) == []
    assert server.request("GET", "/api/v1/check/health/")[0] == 200
    assert_no_traceback(server)


def test_a_disk_that_fills_during_a_tus_chunk_keeps_the_upload_resumable(server, small_disk):
    server.start()
    ticket = server.ticket(7002, attempts=3)
    stored = os.urandom(MiB)
    assert post_archive(server, ticket["token"], stored)[0] == 201
    before = stored_sha256(server)
    body = os.urandom(12 * MiB)
    status, headers, data = create(server, ticket["token"], len(body))
    assert status == 201, data
    path = urllib.parse.urlsplit(headers["location"]).path
    assert patch(server, ticket["token"], path, 0, body[:4 * MiB])[0] == 204
    left = attempts(server, ticket["id"])
    server.stop()

    # The server waits with 3 of the second chunk's 4 MiB written; the test leaves less
    # free than the last MiB (the last write is short) and lets it go on.
    server.start(pause_at="append", pause_after=3 * MiB, resumable=True)
    answer = {}

    def send():
        answer["result"] = patch(server, ticket["token"], path, 4 * MiB, body[4 * MiB:8 * MiB])

    sender = threading.Thread(target=send)
    sender.start()
    server.wait_paused()
    with filler(small_disk, leave=300 * 1024):
        server.resume()
        sender.join(60)
        assert not sender.is_alive()
        detail = assert_clean_507(*answer["result"])
        assert "full" in detail or "space" in detail
        assert head_offset(server, ticket["token"], path) == 4 * MiB
        partial = server.data_dir / "uploads" / _storage_key(server, path)
        assert partial.stat().st_size == 4 * MiB
        assert stored_sha256(server) == before
        # While the disk is full, the next chunk is refused before a byte is written.
        status, headers, data = patch(server, ticket["token"], path, 4 * MiB,
                                      body[4 * MiB:4 * MiB + 256 * 1024])
        assert_clean_507(status, headers, data)
        assert partial.stat().st_size == 4 * MiB

    # Space is back: the same upload resumes from its offset and finishes.
    assert patch(server, ticket["token"], path, 4 * MiB, body[4 * MiB:8 * MiB])[0] == 204
    status, headers, _ = patch(server, ticket["token"], path, 8 * MiB, body[8 * MiB:])
    receipt = upload_receipt(server, ticket["token"], path, status, headers)
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert server.download_sha256(receipt["id"]) == receipt["sha256"]
    after = stored_sha256(server)
    assert {k: v for k, v in after.items() if k in before} == before
    assert attempts(server, ticket["id"]) == left
    assert staged_files(server) == []
    assert_no_traceback(server)


def test_a_disk_that_fills_while_a_single_post_is_staged_removes_it(server, small_disk):
    # A raw body: the spool becomes the staged file whole, nothing is left to write after
    # the pause (so it is stored). A multipart body's file part is written to a file of
    # its own while the body arrives: with room for the body but not for that file too,
    # the answer is a clean 507, and nothing is left behind.
    server.start()
    ticket = server.ticket(7003, attempts=3)
    body = os.urandom(6 * MiB)
    with filler(small_disk, leave=RESERVE + 9 * MiB):
        status, headers, data = post_multipart(server, ticket["token"], body)
        assert_clean_507(status, headers, data)
    assert attempts(server, ticket["id"]) == 3
    with server.session() as session:
        assert session.scalars(select(Archive)).all() == []
    assert staged_files(server) == []
    assert [p.name for p in (server.data_dir / "tmp").iterdir()] == []

    # Space is back: the same upload, sent again, is stored whole.
    status, _, data = post_multipart(server, ticket["token"], body)
    assert status == 201, data
    assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()
    assert attempts(server, ticket["id"]) == 2
    stored_sha256(server)
    assert_no_traceback(server)


def _storage_key(server, path):
    with server.session() as session:
        return session.get(TusUpload, path.rsplit("/", 1)[1]).storage_key


class LowestFree:
    """The least free space seen on ``disk`` (statvfs every millisecond) while the block
    runs: what an upload held at its peak."""

    def __init__(self, disk):
        self.disk, self.lowest, self._done = disk, free_bytes(disk), threading.Event()

    def _watch(self):
        while not self._done.is_set():
            self.lowest = min(self.lowest, free_bytes(self.disk))
            self._done.wait(0.001)

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join(5)


def send_whole(server, token, protocol, body):
    """One request with the whole body: a single POST, or one tus PATCH (after a
    creation that declared its length). Returns (status, headers, data, partial path)."""
    if protocol == "single":
        return (*post_archive(server, token, body), None)
    status, headers, data = create(server, token, len(body))
    assert status == 201, data
    path = urllib.parse.urlsplit(headers["location"]).path
    return (*patch(server, token, path, 0, body), path)


@pytest.mark.parametrize("share", [0.6, 0.85])
@pytest.mark.parametrize("protocol", ["single", "tus"])
def test_a_body_of_60_percent_of_the_usable_space_is_accepted(server, small_disk, protocol,
                                                              share):
    """waitress has spooled the body to DATA_DIR/tmp before the app checks the free
    space: the spool is counted as space the upload already holds (less the 8 MiB the
    copy holds twice at most), so a body of 60 % (and 85 %) of the usable space is
    stored — both got 507 when the check saw only what the spool left (at most half the
    usable space could be sent). The disk never went below the reserve while it was
    copied."""
    server.start()
    ticket = server.ticket(7004, attempts=3)
    usable = free_bytes(small_disk) - RESERVE
    body = os.urandom(int(usable * share))
    with LowestFree(small_disk) as watch:
        status, headers, data, path = send_whole(server, ticket["token"], protocol, body)
    if protocol == "single":
        assert status == 201, (status, data[:300], usable, len(body))
        receipt = json.loads(data)
    else:
        receipt = upload_receipt(server, ticket["token"], path, status, headers)
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert server.download_sha256(receipt["id"]) == receipt["sha256"]
    print(f"\n{protocol}: usable {usable / MiB:.1f} MiB, body {len(body) / MiB:.1f} MiB "
          f"accepted; lowest free while copied {watch.lowest / MiB:.1f} MiB "
          f"(reserve {RESERVE / MiB:.0f} MiB)")
    assert watch.lowest >= RESERVE
    assert staged_files(server) == [] and list((server.data_dir / "uploads").iterdir()) == []
    assert attempts(server, ticket["id"]) == 2
    stored_sha256(server)
    assert_no_traceback(server)


@pytest.mark.parametrize("protocol", ["single", "tus"])
def test_a_spooled_body_that_cannot_be_copied_is_refused_before_a_byte_is_written(
        server, small_disk, protocol):
    """A body that waitress could spool but whose copy cannot fit beside what is left of
    the spool (the copy holds up to 8 MiB twice) still gets a JSON 507 before the app
    writes a byte: no staged file, the tus upload still at offset 0 with an empty file,
    no attempt spent on the single POST."""
    server.start()
    ticket = server.ticket(7005, attempts=3)
    body = os.urandom(free_bytes(small_disk) - RESERVE - 4 * MiB)
    status, headers, data, path = send_whole(server, ticket["token"], protocol, body)
    assert "free space" in assert_clean_507(status, headers, data)
    assert staged_files(server) == []
    if protocol == "tus":
        assert head_offset(server, ticket["token"], path) == 0
        partial = server.data_dir / "uploads" / _storage_key(server, path)
        assert partial.stat().st_size == 0
        assert attempts(server, ticket["id"]) == 2  # held by the upload, resumable
    else:
        assert attempts(server, ticket["id"]) == 3
    with server.session() as session:
        assert session.scalars(select(Archive)).all() == []
    assert_no_traceback(server)
