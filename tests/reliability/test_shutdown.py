"""SIGTERM and SIGINT drain a real ``collector serve`` (collector/server.py, ``Drain``).

Each test starts the server of tests/interop/serverproc.py with a small SHUTDOWN_GRACE
and a client that sends its body in pieces, so that the signal comes while a request is
in flight: the upload that ends inside the grace period is stored whole, the one that
does not is cut as a client that went away would cut it (nothing stored, nothing left in
staging, no attempt spent), and a tus upload resumes after the restart from what it had
committed.
"""

import hashlib
import http.client
import json
import os
import random
import signal
import socket
import threading
import time

import pytest
from serverproc import (
    CHUNK_TYPE,
    MiB,
    create,
    files_under,
    head,
    patch,
    purge_leaves_no_orphan,
    running_place,
)

pytestmark = pytest.mark.slow

LOG_LINES = ("SIGTERM received: stopping", "draining 1 connection(s) with a request in flight",
             "webhook worker stopped", "exit")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    with running_place("postgresql", tmp_path_factory.mktemp("shutdown")) as server:
        yield server


@pytest.fixture
def server(prepared):
    """The module's server, stopped; each test starts it with its own grace."""
    prepared.stop()
    prepared.extra_env = {}
    prepared.log_path.unlink(missing_ok=True)
    yield prepared
    prepared.stop()


def start(server, grace, **kwargs):
    server.extra_env["SHUTDOWN_GRACE"] = str(grace)
    return server.start(**kwargs)


def wait_log(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in server.log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.log()[-3000:]}"
        time.sleep(0.01)


def exit_code(server, timeout=15):
    code = server.proc.wait(timeout)
    server._reap()
    return code


def signal_server(server, number=signal.SIGTERM):
    os.kill(server.pid, number)
    return time.monotonic()


# --- a client that sends slowly ------------------------------------------------------------

def open_request(server, method, path, headers, body=b"", sent=None):
    """A connection that has sent the head and the first ``sent`` bytes of ``body``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(body)}"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body[:sent or 0])
    return sock


def open_head(server, path):
    """A connection that has sent all of a GET's head but its last line break."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 10.0.0.9\r\n".encode())
    return sock


def answer(sock):
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def trickle(sock, data, pieces, pause):
    """Send ``data`` in ``pieces`` parts, ``pause`` seconds apart; False once cut."""
    step = -(-len(data) // pieces)
    try:
        for offset in range(0, len(data), step):
            sock.sendall(data[offset:offset + step])
            time.sleep(pause)
    except OSError:
        return False
    return True


def upload_headers(token):
    return {"Upload-Token": token, "Content-Type": "application/octet-stream"}


def assert_refused(server):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()


def assert_nothing_left(server, ticket, attempts):
    """No archive, no staging, the attempt not spent, and purge finds nothing of it."""
    assert files_under(server.data_dir / "tmp") == []
    server.start()
    assert server.api("GET", f"/api/v1/archives/?ticket={ticket['number']}") == []
    assert server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"] == attempts
    assert purge_leaves_no_orphan(server) == []


# --- the tests -------------------------------------------------------------------------------

def test_an_upload_that_ends_within_the_grace_is_stored_whole(server):
    start(server, grace=5)
    ticket = server.ticket(7001)
    body = random.Random(1).randbytes(2 * MiB + 123)
    sock = open_request(server, "POST", "/api/v1/archives/?filename=s.bin",
                        upload_headers(ticket["token"]), body, sent=MiB)
    ready, live = open_head(server, "/readyz"), open_head(server, "/livez")
    time.sleep(0.2)  # waitress has taken in the first MiB

    signalled = signal_server(server)
    wait_log(server, "draining 3 connection(s) with a request in flight")
    assert_refused(server)  # no new connection, from the first signal on
    ready.sendall(b"\r\n")
    live.sendall(b"\r\n")
    status, data = answer(ready)
    assert (status, json.loads(data)) == (503, {"status": "draining"})
    assert answer(live)[0] == 200
    assert trickle(sock, body[MiB:], pieces=5, pause=0.1)
    status, data = answer(sock)
    answered = time.monotonic()
    for each in (sock, ready, live):
        each.close()
    assert status == 201, data
    receipt = json.loads(data)
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()

    assert exit_code(server) == 0
    drained = time.monotonic() - signalled
    assert drained < 4, drained  # the answer sent, it did not wait for the deadline
    # Nor for waitress's loop to wake by itself (once a second): 0.07 s measured.
    assert time.monotonic() - answered < 0.8
    log = server.log()
    positions = [log.index(line.replace("1 connection", "3 connection")) for line in LOG_LINES]
    assert positions == sorted(positions), log[-2000:]
    assert "deadline" not in log and "Traceback" not in log
    server.start()
    assert server.download_sha256(receipt["id"]) == receipt["sha256"]
    assert server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"] == 2


def test_an_upload_still_arriving_at_the_deadline_is_cut_and_leaves_nothing(server):
    start(server, grace=1)
    ticket = server.ticket(7002)
    body = random.Random(2).randbytes(2 * MiB)
    sock = open_request(server, "POST", "/api/v1/archives/?filename=s.bin",
                        upload_headers(ticket["token"]), body, sent=MiB)
    time.sleep(0.2)
    signalled = signal_server(server)
    # A slow client: 1/100 of the rest every 0.1 s, still sending at the deadline.
    sender = threading.Thread(target=trickle, args=(sock, body[MiB:], 100, 0.1))
    sender.start()
    assert exit_code(server) == 0
    drained = time.monotonic() - signalled
    sender.join(30)
    sock.close()
    assert 1 <= drained < 3, drained
    log = server.log()
    for line in LOG_LINES:
        assert line in log, log[-2000:]
    assert "deadline reached: cutting 1 request(s) in flight" in log
    assert_nothing_left(server, ticket, attempts=3)


def test_an_upload_the_app_is_storing_at_the_deadline_is_rolled_back(server):
    """The app is copying the body into staging when the deadline comes: its body reads
    as ended, the transaction aborts, the staging file goes."""
    start(server, grace=1, pause_at="stage", pause_after=MiB, resumable=True)
    ticket = server.ticket(7003)
    body = random.Random(3).randbytes(3 * MiB)
    outcome = {}

    def post():
        try:
            outcome["answer"] = server.request("POST", "/api/v1/archives/?filename=s.bin",
                                               body, upload_headers(ticket["token"]))
        except (OSError, http.client.HTTPException) as exc:
            outcome["error"] = exc

    client = threading.Thread(target=post)
    client.start()
    where = server.wait_paused()
    assert (server.data_dir / "tmp" / where["staging"]).exists()
    signal_server(server)
    wait_log(server, "deadline reached: cutting 1 request(s) in flight")
    server.resume()  # the app goes on reading: the body has ended
    assert exit_code(server) == 0
    client.join(30)
    assert "answer" not in outcome, outcome  # the connection was closed at the deadline
    assert not (server.data_dir / "tmp" / where["staging"]).exists()
    assert "worker thread(s) still busy" not in server.log()
    assert_nothing_left(server, ticket, attempts=3)


def test_a_tus_upload_cut_by_a_stop_resumes_from_its_committed_offset(server):
    start(server, grace=1)
    ticket = server.ticket(7004)
    token = ticket["token"]
    body = random.Random(4).randbytes(3 * MiB + 77)
    path = create(server, token, len(body))
    assert patch(server, token, path, 0, body[:MiB])[0] == 204
    sock = open_request(server, "PATCH", path, {
        "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Offset": str(MiB),
        "Content-Type": CHUNK_TYPE}, body[MiB:2 * MiB], sent=MiB // 2)
    time.sleep(0.2)
    signal_server(server)
    assert exit_code(server) == 0
    sock.close()
    assert "deadline reached: cutting 1 request(s) in flight" in server.log()

    server.start()
    assert int(head(server, token, path)["upload-offset"]) == MiB
    assert patch(server, token, path, MiB, body[MiB:2 * MiB])[0] == 204
    status, headers, data = patch(server, token, path, 2 * MiB, body[2 * MiB:])
    assert status == 204, data
    archive_id = int(headers["upload-archive-id"])
    assert server.download_sha256(archive_id) == hashlib.sha256(body).hexdigest()
    assert server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"] == 2


def test_a_second_signal_stops_at_once_and_idle_connections_do_not_hold_the_drain(server):
    start(server, grace=30)
    ticket = server.ticket(7005)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    idle.request("GET", "/livez")
    assert idle.getresponse().read() == b'{"status": "ok"}'  # kept alive, now idle
    body = random.Random(5).randbytes(2 * MiB)
    sock = open_request(server, "POST", "/api/v1/archives/?filename=s.bin",
                        upload_headers(ticket["token"]), body, sent=MiB)
    time.sleep(0.2)

    signal_server(server, signal.SIGINT)
    wait_log(server, "draining 1 connection(s) with a request in flight (1 idle closed)")
    assert idle.sock.recv(1) == b""  # closed by the server
    time.sleep(0.3)
    assert server.proc.poll() is None  # the upload holds the drain
    signalled = signal_server(server)
    assert exit_code(server) == 0
    assert time.monotonic() - signalled < 2
    sock.close()
    idle.close()
    log = server.log()
    assert "SIGINT received: stopping" in log
    assert "SIGTERM during the drain: stopping now" in log
    assert_nothing_left(server, ticket, attempts=3)


def test_an_idle_server_stops_at_once(server):
    start(server, grace=30)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    idle.request("GET", "/readyz")
    assert json.loads(idle.getresponse().read())["status"] == "ok"
    time.sleep(0.2)  # the worker thread has let go of the answered request
    signalled = signal_server(server)
    assert exit_code(server) == 0
    assert time.monotonic() - signalled < 1
    idle.close()
    assert "draining 0 connection(s) with a request in flight (1 idle closed)" in server.log()
