"""kill -9 of a real ``collector serve`` at random points of single and tus uploads.

Each run picks a kill point and its details (sizes, chunk sizes, how many bytes are in
when the server dies, multipart or raw body) from a random generator seeded once per
session. The seed is printed when the runs of a database start, and with every run
(shown by pytest when the run fails); replay a failure with ``CRASH_SEED=<seed>`` (and
``CRASH_RUNS`` for more or fewer runs; by default one per kill point).
The first runs cover every kill point once, in a shuffled order; the rest are drawn at
random. Kill points (serverproc's pause points where the server must be caught at an
exact moment; the server waits there and is killed):

* single POST: while waitress receives the body; while the app parses, hashes and stages
  it (``stage``, after a random number of bytes); with the row flushed and the staged
  file complete (``precommit``); with the archive file in place before the database
  commit (``vote``); after the commit, before the answer (``committed``);
* tus: during the creation before its commit (``create``) and after it, its answer lost
  (``created``); between chunks; while a PATCH body is received; while a chunk is
  appended (``append``, after a random number of bytes, at a random chunk); the last
  chunk fsynced but not recorded (``finish``); ``precommit``, ``vote`` and ``committed``
  of the last chunk.

After the kill the server is started again and the client does what a client does: a
single upload is sent again; a tus upload asks its offset (``HEAD``) and sends the rest,
or, when it never learnt its URL, starts a new upload. Then:

* every archive of the ticket has the file's bytes (sha256 of the stored file and of a
  staff download, and the sha256/md5 recorded), and every archive on the server still
  matches its row;
* there is one archive, or two when the crash came after the commit of a single POST (the
  client never got the answer and sent it again: both are archives);
* no row points to a missing file, ``collector purge`` removes exactly the files the
  crash left over (what ``--dry-run`` names), and after it every file belongs to a row;
* the ticket's attempts are its first count minus its archives: a crash never costs the
  customer an attempt (after ``purge`` for a tus creation whose answer was lost);
* the server logged no traceback.
"""

import concurrent.futures
import hashlib
import http.client
import os
import random
import secrets
import socket
import time

import pytest
from serverproc import (
    CHUNK_TYPE,
    MiB,
    announce,
    assert_rows_have_files,
    create,
    files_under,
    head,
    patch,
    purge_leaves_no_orphan,
    running_place,
)
from sqlalchemy import select

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)
from collector.archives.models import Archive, TusUpload

pytestmark = pytest.mark.slow



def _new_seed():
    # Under pytest-xdist every worker must collect the same runs: the seed then comes from
    # the id of the test run, which its workers share (random per run all the same).
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    return int(run_id[:8], 16) if run_id else secrets.randbelow(2**32)


SEED = int(os.environ.get("CRASH_SEED") or _new_seed())
POINTS = [
    ("single", "receiving"), ("single", "stage"), ("single", "precommit"),
    ("single", "vote"), ("single", "committed"),
    ("tus", "create"), ("tus", "created"), ("tus", "between-chunks"),
    ("tus", "receiving"), ("tus", "append"), ("tus", "finish"), ("tus", "precommit"),
    ("tus", "vote"), ("tus", "committed"),
]
# Kill points that leave a file no row needs, for purge to remove: a staged file (single)
# or the tus file's second name in staging; an archive file published in a transaction
# that never committed; a tus upload file whose row never committed; the partial file of
# an upload that became an archive just before the crash; the empty upload whose
# creation answer was lost (its attempt comes back with it).
LEAVES_ORPHAN = {("single", "stage"), ("single", "precommit"), ("single", "vote"),
                 ("tus", "create"), ("tus", "created"), ("tus", "precommit"),
                 ("tus", "vote"), ("tus", "committed")}
# One run per kill point by default (each with its own random sizes, attempts and bytes
# in; the seed changes every session, so successive runs differ): CRASH_RUNS for a soak.
RUNS = int(os.environ.get("CRASH_RUNS") or len(POINTS))


def scenarios(seed, runs, points=POINTS, sizes=(2 * MiB, 6 * MiB)):
    rng = random.Random(seed)
    first = points[:]
    rng.shuffle(first)
    chosen = (first + [rng.choice(points) for _ in range(runs)])[:runs]
    result = []
    for protocol, point in chosen:
        size = rng.randrange(*sizes)
        # At least 2: the retry after a crash past the commit is a second archive.
        run = {"protocol": protocol, "point": point, "size": size,
               "attempts": rng.randrange(2, 5), "seed": rng.randrange(2**32)}
        if protocol == "single":
            run["multipart"] = rng.random() < 0.5
            # A chunk boundary at or past this many bytes is still followed by bytes.
            run["after"] = rng.randrange(0, (size // MiB - 1) * MiB)
            run["fraction"] = rng.uniform(0.05, 0.95)
        else:
            chunk = rng.choice([256 * 1024, 512 * 1024 + 4321, MiB, 2 * MiB + 12345])
            chunks = -(-size // chunk)
            run["chunk"] = chunk
            # chunks sent before the kill (the last chunk is always left to send)
            run["before"] = rng.randrange(0, chunks)
            run["fraction"] = rng.uniform(0.05, 0.95)
            in_flight = min(chunk, size - run["before"] * chunk)
            # the append pause comes at the first 1 MiB piece at or past `after`
            run["after"] = rng.randrange(0, ((in_flight - 1) // MiB) * MiB + 1)
        result.append(run)
    return result


RUN_LIST = scenarios(SEED, RUNS)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crash_server(request, tmp_path_factory):
    """One server (data dir and database) for all runs of a backend; each run uses a
    ticket of its own and leaves nothing behind (purge), so runs do not see each other."""
    announce(request, f"test_crash ({request.param}): CRASH_SEED={SEED} CRASH_RUNS={RUNS}")
    with running_place(request.param, tmp_path_factory.mktemp(f"crash-{request.param}")) \
            as server:
        yield server


# --- the client ----------------------------------------------------------------------------

BOUNDARY = "crash-test-boundary-7d1f"


def single_request(token, body, multipart):
    """(path, headers, bytes) of a single-request upload of ``body``."""
    if multipart:
        data = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"crash.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + body + f"\r\n--{BOUNDARY}--\r\n".encode()
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
        return "/api/v1/archives/", {"Upload-Token": token,
                                     "Content-Type": content_type}, data
    return "/api/v1/archives/?filename=crash.bin", {
        "Upload-Token": token, "Content-Type": "application/octet-stream"}, body


def post_single(server, token, body, multipart, timeout=30):
    path, headers, data = single_request(token, body, multipart)
    return server.request("POST", path, data, headers, timeout=timeout)


def send_part(server, method, path, headers, data, fraction):
    """A request's head and the first ``fraction`` of its body; the open socket."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}",
             *(f"{k}: {v}" for k, v in headers.items()), f"Content-Length: {len(data)}"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + data[:int(len(data) * fraction)])
    return sock


def send_rest(server, token, path, body, offset, chunk):
    """PATCH from ``offset`` to the end; the last answer's headers."""
    while True:
        piece = body[offset:offset + chunk]
        status, headers, data = patch(server, token, path, offset, piece)
        offset += len(piece)
        assert status == 204, (status, data)
        if offset == len(body):
            assert headers["upload-receipt-sha256"] == hashlib.sha256(body).hexdigest()
            return headers


# --- one run ---------------------------------------------------------------------------------

def kill_during(server, action):
    """Run ``action`` (a request that reaches the pause point) and kill -9 the server
    there; the request gets no answer. Returns what the pause point said."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(action)
        where = server.wait_paused()
        server.kill()
        with pytest.raises((OSError, http.client.HTTPException)):
            pending.result(30)
    return where


def crash_single(server, run, ticket, body, staging_files=True):
    """Kill the server at the run's point of a single upload; what the pause point said.
    ``staging_files``: the body is staged to a local file (not on S3), which is checked."""
    token = ticket["token"]
    point = run["point"]
    if point == "receiving":
        path, headers, data = single_request(token, body, run["multipart"])
        sock = send_part(server, "POST", path, headers, data, run["fraction"])
        time.sleep(0.3)  # let waitress take in what was sent
        server.kill()
        sock.close()
        return {}
    where = kill_during(server, lambda: post_single(server, token, body, run["multipart"],
                                                    timeout=60))
    assert where["point"] == point
    staging = server.data_dir / "tmp"
    if not staging_files:
        return where
    if point == "stage":
        assert (staging / where["staging"]).stat().st_size == where["written"]
    elif point == "precommit":
        [name] = where["staged"]
        assert (staging / name).stat().st_size == len(body)
    return where


def crash_tus(server, run, ticket, body):
    token, point, chunk = ticket["token"], run["point"], run["chunk"]
    if point in ("create", "created"):
        where = kill_during(server, lambda: create(server, token, len(body), timeout=60))
        return None, 0, where
    path = create(server, token, len(body))
    if point in ("finish", "precommit", "vote", "committed"):
        before = (len(body) - 1) // chunk  # every chunk but the last
    else:
        before = run["before"]
    for offset in range(0, before * chunk, chunk):
        assert patch(server, token, path, offset, body[offset:offset + chunk])[0] == 204
    offset = before * chunk
    piece = body[offset:offset + chunk]  # the chunk in flight when the server dies
    if point == "between-chunks":
        server.kill()
        return path, offset, {}
    if point == "receiving":
        sock = send_part(server, "PATCH", path, {
            "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Offset": str(offset),
            "Content-Type": CHUNK_TYPE}, piece, run["fraction"])
        time.sleep(0.3)
        server.kill()
        sock.close()
        return path, offset, {}
    where = kill_during(server, lambda: patch(server, token, path, offset, piece, 60))
    assert where["point"] == point
    if point == "append":
        assert where["offset"] == offset and where["written"] >= run["after"]
    return path, offset, where


def check_archives(server, ticket, body, expected):
    """The ticket's archives are ``expected`` copies of ``body``; every archive on the
    server matches its row."""
    sha256 = hashlib.sha256(body).hexdigest()
    listed = server.archives_of(ticket["number"])
    assert len(listed) == expected, listed
    for archive in listed:
        assert (archive["size"], archive["sha256"], archive["md5"]) == (
            len(body), sha256, hashlib.md5(body).hexdigest())
        assert server.download_sha256(archive["id"]) == sha256
    with server.session() as session:
        for archive in session.scalars(select(Archive)):
            stored = server.data_dir / "archives" / archive.storage_key[:2] / archive.storage_key
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == archive.sha256
    return listed


def referenced(server):
    with server.session() as session:
        archives = {f"archives/{k[:2]}/{k}" for k in session.scalars(
            select(Archive.storage_key))}
        uploads = {f"uploads/{k}" for k in session.scalars(
            select(TusUpload.storage_key).where(TusUpload.finished_at.is_(None)))}
    return archives | uploads


@pytest.mark.parametrize("index", range(len(RUN_LIST)), ids=lambda i: "run{:02d}-{}-{}".format(
    i, RUN_LIST[i]["protocol"], RUN_LIST[i]["point"]))
def test_killed_server_restarts_and_nothing_is_lost(crash_server, index):
    server, run = crash_server, RUN_LIST[index]
    print(f"CRASH_SEED={SEED} CRASH_RUNS={RUNS} run{index:02d}: {run}")
    body = random.Random(run["seed"]).randbytes(run["size"])
    protocol, point = run["protocol"], run["point"]
    pause = point if point not in ("receiving", "between-chunks") else None
    server.stop()
    server.start(pause_at=pause, pause_after=run["after"],
                 pause_from=run.get("before", 0) * run.get("chunk", 0))
    ticket = server.ticket(5000 + index, attempts=run["attempts"])
    token = ticket["token"]

    if protocol == "single":
        where = crash_single(server, run, ticket, body)
        left = set(files_under(server.data_dir))
        server.start()
        status, _, data = post_single(server, token, body, run["multipart"])
        assert status == 201, data
    else:
        path, offset, where = crash_tus(server, run, ticket, body)
        left = set(files_under(server.data_dir))
        server.start()
        if path is None:
            # It never learnt its URL: a new upload. (After "create" the first one never
            # existed; after "created" it holds an attempt until purge gives it back.)
            path = create(server, token, len(body))
            offset = 0
        state = head(server, token, path)
        resumed_at = int(state["upload-offset"])
        assert resumed_at == (len(body) if point == "committed" else offset)
        if resumed_at == len(body):
            # The answer to the last chunk was lost: an empty PATCH asks for it again.
            status, headers, data = patch(server, token, path, resumed_at, b"")
            assert status == 204, (status, data)
        else:
            headers = send_rest(server, token, path, body, resumed_at, run["chunk"])
        assert int(headers["upload-archive-id"]) > 0

    copies = 2 if (protocol, point) == ("single", "committed") else 1
    check_archives(server, ticket, body, copies)
    assert_rows_have_files(server)
    # What the crash left that no row needs now, and the lost creation's empty upload.
    orphans = sorted((left & set(files_under(server.data_dir))) - referenced(server))
    if (protocol, point) == ("tus", "created"):
        orphans.append(f"uploads/{where['key']}")
        assert server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"] == \
            run["attempts"] - 2  # the lost upload's attempt, until purge gives it back
    assert len(orphans) == (1 if (protocol, point) in LEAVES_ORPHAN else 0), orphans
    assert purge_leaves_no_orphan(server) == sorted(orphans)
    check_archives(server, ticket, body, copies)
    attempts = server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"]
    assert attempts == run["attempts"] - copies
    assert files_under(server.data_dir / "tmp") == []
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
    server.stop()
