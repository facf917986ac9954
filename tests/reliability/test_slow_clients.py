"""Slow and broken clients against a real ``collector serve`` with a short channel timeout.

waitress reads request bodies on its I/O thread and hands a request to a worker only once
the whole body has arrived, so a client that stalls holds a connection, never a worker.
With more stalled clients than worker threads at once this test shows:

* a health check and a normal upload still succeed meanwhile (nothing is waiting for a
  worker);
* a client that declared more bytes than it sent and went silent (single POST and tus
  PATCH) is disconnected by ``WAITRESS_CHANNEL_TIMEOUT`` (checked every second by
  ``collector serve``: the bound below is generous, not a timing claim);
* a client that disconnects mid-body and one trickling a byte a second leave nothing
  either: no archive, no staged file, no spool file open, attempts and tus offsets
  unchanged;
* a body longer than its ``Content-Length`` is cut at the declared length (that is where
  HTTP says the request ends); the extra bytes are answered as a bad next request.
"""

import base64
import hashlib
import json
import os
import socket
import threading
import time
import urllib.parse

import pytest
from serverproc import MiB, Server, database
from sqlalchemy import select

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)
from collector.archives.models import Archive, TusUpload
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

CHANNEL_TIMEOUT = 2
THREADS = 4  # serverproc's ini
# collector serve looks for silent channels every second (cleanup_interval): generous.
CLOSED_WITHIN = 90


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path):
    with database(request.param, tmp_path / "db") as db_url:
        server = Server(tmp_path / "server", db_url)
        server.extra_env = {"WAITRESS_CHANNEL_TIMEOUT": str(CHANNEL_TIMEOUT)}
        server.setup()
        try:
            yield server.start()
        finally:
            server.stop()


def raw_request(server, head_lines, body=b""):
    """A socket that has sent a request's head (and ``body``); the caller closes it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=CLOSED_WITHIN)
    head = "\r\n".join([*head_lines, f"Host: 127.0.0.1:{server.port}", "", ""])
    sock.sendall(head.encode() + body)
    return sock


def post_head(token, length):
    return ["POST /api/v1/archives/?filename=slow.bin HTTP/1.1", f"Upload-Token: {token}",
            "Content-Type: application/octet-stream", f"Content-Length: {length}"]


def patch_head(token, path, offset, length):
    return [f"PATCH {path} HTTP/1.1", "Tus-Resumable: 1.0.0", f"Upload-Token: {token}",
            f"Upload-Offset: {offset}", "Content-Type: application/offset+octet-stream",
            f"Content-Length: {length}"]


def closed_by_server(sock):
    """Wait until the server closes the connection; returns what it sent first."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def attempts(server, ticket_id):
    with server.session() as session:
        return session.get(Ticket, ticket_id).attempts


def archives(server):
    with server.session() as session:
        return {a.sha256: a.size for a in session.scalars(select(Archive))}


def staged_files(server):
    return sorted(p.name for p in (server.data_dir / "tmp").iterdir()
                  if not p.name.startswith(".probe"))


def test_stalled_and_broken_clients_hold_no_worker_and_leave_nothing(server):
    ticket = server.ticket(8001, attempts=5)
    token = ticket["token"]
    metadata = "filename " + base64.b64encode(b"tus.bin").decode()
    status, headers, data = server.request("POST", "/api/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Length": str(4 * MiB),
        "Upload-Metadata": metadata})
    assert status == 201, data
    tus_path = urllib.parse.urlsplit(headers["location"]).path
    left = attempts(server, ticket["id"])  # the tus upload holds one

    # More stalled clients than worker threads: each declared more than it sent.
    stalled = [raw_request(server, post_head(token, 2 * MiB), os.urandom(MiB))
               for _ in range(THREADS + 2)]
    stalled.append(raw_request(server, patch_head(token, tus_path, 0, 2 * MiB),
                               os.urandom(MiB)))
    # One goes away mid-body.
    gone = raw_request(server, post_head(token, 4 * MiB), os.urandom(MiB))
    gone.close()
    # One trickles a byte a second until told to stop.
    trickler = raw_request(server, post_head(token, MiB))
    stop = threading.Event()

    def trickle():
        while not stop.wait(1):
            try:
                trickler.sendall(b"x")
            except OSError:
                return

    trickling = threading.Thread(target=trickle)
    trickling.start()
    try:
        # Meanwhile the service answers: health, and a whole upload at once.
        status, _, data = server.request("GET", "/api/v1/check/health/", timeout=10)
        assert status == 200, data
        body = os.urandom(2 * MiB)
        status, _, data = server.request("POST", "/api/v1/archives/?filename=ok.bin", body, {
            "Upload-Token": token, "Content-Type": "application/octet-stream"}, timeout=30)
        assert status == 201, data
        assert json.loads(data)["sha256"] == hashlib.sha256(body).hexdigest()

        # The silent ones are disconnected by the channel timeout, without an answer.
        started = time.monotonic()
        for sock in stalled:
            assert closed_by_server(sock) == b""
            sock.close()
        assert time.monotonic() - started < CLOSED_WITHIN
        # The trickler is never idle, so it is still connected; it holds no worker.
        assert trickling.is_alive()
    finally:
        stop.set()
        trickling.join(10)
        trickler.close()

    # A body longer than declared: the declared bytes are the request, the rest garbage.
    declared, extra = os.urandom(1000), b"GARBAGE\r\n\r\n"
    sock = raw_request(server, post_head(token, len(declared)), declared + extra)
    answers = closed_by_server(sock)
    sock.close()
    assert answers.startswith(b"HTTP/1.1 201 "), answers[:300]
    assert b" 400 Bad Request\r\n" in answers, answers[-500:]

    assert archives(server) == {hashlib.sha256(body).hexdigest(): len(body),
                                hashlib.sha256(declared).hexdigest(): len(declared)}
    assert attempts(server, ticket["id"]) == left - 2
    with server.session() as session:
        upload = session.get(TusUpload, tus_path.rsplit("/", 1)[1])
        assert upload.offset == 0
        assert (server.data_dir / "uploads" / upload.storage_key).stat().st_size == 0
    assert staged_files(server) == []
    # No spool file of a dropped body is still open in the server.
    deadline = time.monotonic() + 10
    spool = f"{server.data_dir / 'tmp'}/"
    while any(path.startswith(spool) for path in server.open_files()):
        assert time.monotonic() < deadline, server.open_files()
        time.sleep(0.1)
    assert "Traceback" not in server.log(), server.log()[-3000:]
