"""Two ``collector serve`` processes on one PostgreSQL database and one S3 bucket (moto),
as several instances behind a load balancer that spreads requests anywhere.

* a tus upload whose chunks alternate between the instances becomes one archive,
  byte-identical (sha256 of the receipt, the database row and a download from the other
  instance), listed once, the ticket's attempt spent once;
* a PATCH of the same upload on the other instance while the first is writing a chunk
  (paused at serverproc's ``append`` point) gets 409 and changes nothing;
* a concatenation whose partial uploads went to different instances is right too;
* sign-in state (the signed session cookie) and the sign-in and token-guessing throttles
  hold whichever instance answers;
* both instances run the webhook worker, and each event reaches the help desk once;
* docs/nginx-instances.conf in front of both keeps one upload on one instance and spreads
  the rest.

PostgreSQL only: several instances need a shared database (SQLite is one machine).
"""

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
from pathlib import Path

import pyotp
import pytest
import requests
from serverproc import (
    INI,
    MiB,
    Server,
    create,
    database,
    free_port,
    head,
    patch,
    receipt,
    tus_headers,
)
from webhook_receiver import Receiver

import collector.models  # noqa: F401 (every mapper: accounts.services needs them all)

pytestmark = pytest.mark.slow


@pytest.fixture
def instances(tmp_path, s3_server):
    """Two servers: the first migrates and makes the admin; the second shares its
    database, bucket prefix and SECRET_KEY (sessions are signed cookies), nothing else."""
    with database("postgresql", tmp_path / "db") as db_url:
        first = Server(tmp_path / "one", db_url).setup()
        second = Server(tmp_path / "two", db_url)
        second.data_dir.mkdir(parents=True)
        second.ini.write_text(INI.format(data_dir=second.data_dir))
        second.token, second.secret_key = first.token, first.secret_key
        storage = s3_server.settings()
        env = {"STORAGE_URL": storage["storage.url"],
               "STORAGE_ENDPOINT_URL": storage["storage.endpoint_url"],
               "STORAGE_REGION": storage["storage.region"], "STORAGE_QUOTA": "10GiB",
               # Both webhook workers poll often: they contend for every delivery.
               "WEBHOOK_INTERVAL": "0.2"}
        servers = [first, second]
        try:
            for server in servers:
                server.extra_env = dict(env)
            second.start()
            # The first one pauses 4 MiB into a chunk that starts at 40 MiB or later.
            first.start(pause_at="append", pause_after=4 * MiB, pause_from=40 * MiB,
                        resumable=True)
            yield first, second
        finally:
            for server in servers:
                server.stop()
            for server in servers:
                assert "Traceback" not in server.log(), server.log()[-3000:]


def test_chunks_alternate_between_instances(instances):
    one, two = instances
    ticket = one.ticket(501, attempts=3)
    token = ticket["token"]
    body = os.urandom(27 * MiB + 12345)
    path = create(one, token, len(body), name="alternating.log")
    # Chunks of several sizes: below a segment (8 MiB), across segment boundaries, and
    # each one on the other instance than the last (neither has the other's hash state).
    cuts = [0, 3 * MiB, 3 * MiB + 1, 11 * MiB, 19 * MiB + 7, 27 * MiB, len(body)]
    servers = [two, one]
    for number, (start, end) in enumerate(zip(cuts, cuts[1:])):
        status, headers, data = patch(servers[number % 2], token, path, start,
                                      body[start:end])
        if end < len(body):
            assert status == 204, (status, data)
            assert headers["upload-offset"] == str(end)
    got = receipt(one, token, path, status, headers)
    digest = hashlib.sha256(body).hexdigest()
    # Over 4 MiB the md5 comes from the background job of the instance that finished it.
    assert got["sha256"] == digest and got["md5"] in (None, hashlib.md5(body).hexdigest())
    # Listed once, from either instance; the attempt spent once; the bytes identical.
    for server in (one, two):
        listed = server.archives_of(501)
        assert [item["id"] for item in listed] == [got["id"]]
        assert listed[0]["md5"] == hashlib.md5(body).hexdigest()
        assert server.api("GET", "/api/v1/tickets/501/")["attempts"] == 2
    assert two.download_sha256(got["id"]) == digest
    assert one.download_sha256(got["id"]) == digest
    # An instance that never saw a chunk of it answers for it too.
    assert head(two, token, path)["upload-offset"] == str(len(body))
    # Nothing of the upload is kept on either instance's disk.
    for server in (one, two):
        assert list((server.data_dir / "uploads").iterdir()) == []


def test_a_concurrent_patch_on_the_other_instance_is_409(instances):
    one, two = instances
    token = one.ticket(502, attempts=3)["token"]
    body = os.urandom(48 * MiB + 5)
    path = create(two, token, len(body))
    status, _, data = patch(two, token, path, 0, body[:40 * MiB], timeout=120)
    assert status == 204, data
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # The first instance takes the lock and stops inside the chunk (4 MiB in).
        writing = pool.submit(patch, one, token, path, 40 * MiB, body[40 * MiB:46 * MiB])
        assert one.wait_paused()["offset"] == 40 * MiB
        status, _, data = patch(two, token, path, 40 * MiB, b"x" * MiB)
        assert status == 409, (status, data)
        assert b"another request" in data
        status, _, _ = two.request("DELETE", path, headers=tus_headers(token))
        assert status == 409
        assert head(two, token, path)["upload-offset"] == str(40 * MiB)
        one.resume()
        status, headers, data = writing.result(timeout=120)
    assert status == 204, data
    assert headers["upload-offset"] == str(46 * MiB)
    status, headers, _ = patch(two, token, path, 46 * MiB, body[46 * MiB:])
    got = receipt(two, token, path, status, headers)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert two.api("GET", "/api/v1/tickets/502/")["attempts"] == 2


def test_an_instance_killed_inside_a_chunk_leaves_the_upload_to_the_other(instances):
    """kill -9 of the instance writing a chunk: its row lock ends with its connection,
    the segment it had rewritten past the committed offset counts for nothing, and the
    other instance finishes the upload byte-identical."""
    one, two = instances
    token = one.ticket(505, attempts=3)["token"]
    body = os.urandom(60 * MiB + 99)
    path = create(two, token, len(body))
    status, _, data = patch(two, token, path, 0, body[:45 * MiB], timeout=120)
    assert status == 204, data
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # 45 MiB is inside segment 5: its 5 valid MiB plus 3 new ones are PUT (bytes past
        # the committed offset) before the pause, 4 MiB into the chunk.
        writing = pool.submit(patch, one, token, path, 45 * MiB, body[45 * MiB:55 * MiB])
        assert one.wait_paused()["offset"] == 45 * MiB
        one.kill()
        with pytest.raises(OSError):
            writing.result(timeout=60)
    assert head(two, token, path)["upload-offset"] == str(45 * MiB)
    status, headers, _ = patch(two, token, path, 45 * MiB, body[45 * MiB:], timeout=120)
    got = receipt(two, token, path, status, headers)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert two.download_sha256(got["id"]) == got["sha256"]
    assert two.api("GET", "/api/v1/tickets/505/")["attempts"] == 2


def test_concatenation_of_partials_sent_to_different_instances(instances):
    one, two = instances
    token = one.ticket(503, attempts=3)["token"]
    pieces = [os.urandom(9 * MiB + 3), os.urandom(1000), os.urandom(2 * MiB)]
    urls = []
    for number, piece in enumerate(pieces):
        server = (one, two)[number % 2]
        status, headers, data = server.request("POST", "/api/v1/uploads/", piece, tus_headers(
            token, **{"Upload-Length": str(len(piece)), "Upload-Concat": "partial",
                      "Content-Type": "application/offset+octet-stream"}))
        assert status == 201, data
        urls.append(urllib.parse.urlsplit(headers["location"]).path)
    status, headers, data = two.request("POST", "/api/v1/uploads/", headers=tus_headers(
        token, **{"Upload-Concat": "final;" + " ".join(urls)}))
    assert status == 201, data
    expected = b"".join(pieces)
    joined = json.loads(data)  # a final upload's 201 carries the receipt
    assert headers["upload-archive-id"] == str(joined["id"])
    assert joined["sha256"] == hashlib.sha256(expected).hexdigest()
    assert one.download_sha256(joined["id"]) == joined["sha256"]
    listed = one.api("GET", "/api/v1/archives/?ticket=503")
    assert [item["id"] for item in listed] == [joined["id"]]
    assert one.api("GET", "/api/v1/tickets/503/")["attempts"] == 2


def _csrf(page):
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_sign_in_and_throttles_hold_across_instances(instances):
    one, two = instances
    from collector.accounts import services

    with one.session() as session, session.begin():
        user = services.create_user(session, "alice", "correct horse battery", totp=True)
        secret = user.totp_secret
    # Password on one instance, the TOTP code on the other, the pages on both: the
    # session is a cookie signed with the shared SECRET_KEY, its stamp is in the database.
    browser = requests.Session()
    page = browser.get(one.base + "/login")
    browser.post(one.base + "/login", data={
        "username": "alice", "password": "correct horse battery",
        "csrf_token": _csrf(page)}, allow_redirects=False).raise_for_status()
    page = browser.get(two.base + "/verify")
    done = browser.post(two.base + "/verify", data={
        "code": pyotp.TOTP(secret).now(), "csrf_token": _csrf(page)}, allow_redirects=False)
    assert done.status_code == 303, done.text[:500]
    for server in (one, two):
        assert browser.get(server.base + "/tickets/", allow_redirects=False).status_code == 200
    # Sign-in throttle: 5 failures of one username, spread over the instances.
    for number in range(5):
        server = (one, two)[number % 2]
        page = requests.get(server.base + "/login")
        answer = requests.post(server.base + "/login", cookies=page.cookies, data={
            "username": "bob", "password": "wrong", "csrf_token": _csrf(page)})
        assert answer.status_code == 401
    page = requests.get(one.base + "/login")
    answer = requests.post(one.base + "/login", cookies=page.cookies, data={
        "username": "bob", "password": "wrong", "csrf_token": _csrf(page)})
    assert answer.status_code == 429
    # Token guessing: 20 unknown tokens from one address, 10 on each instance.
    for number in range(20):
        server = (one, two)[number % 2]
        status, _, _ = server.request("GET", f"/api/v1/check/token/guess{number:040d}")
        assert status in (403, 404), status
    status, _, data = two.request("GET", "/api/v1/check/token/" + "x" * 43)
    assert status == 429, (status, data)


def test_each_webhook_event_is_delivered_once_by_two_workers(instances):
    one, two = instances
    receiver = Receiver()
    try:
        ticket = one.ticket(504, attempts=10)
        one.api("POST", "/api/v1/webhooks/", {"platform": "crash", "url": receiver.url,
                                              "secret": "s" * 20})
        for number in range(6):
            server = (one, two)[number % 2]
            status, _, data = server.request(
                "POST", "/api/v1/archives/", b"line\n" * (number + 1),
                {"Upload-Token": ticket["token"], "Content-Type": "application/octet-stream",
                 "Content-Disposition": f'attachment; filename="a{number}.log"'})
            assert status == 201, data
        deadline = time.monotonic() + 60
        while len(receiver.received) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # several more passes of both workers: nothing is sent twice
        ids = [json.loads(body)["id"] for _, body in receiver.received]
        assert len(ids) == 6 and len(set(ids)) == 6, ids
    finally:
        receiver.close()


NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
ROOT = Path(__file__).parents[2]


def _balancer_conf(one, two, port):
    """docs/nginx-instances.conf with only its listen port and instances swapped."""
    text = (ROOT / "docs" / "nginx-instances.conf").read_text()
    for old, new in (("listen 80;", f"listen 127.0.0.1:{port};"),
                     ("server app1:6543;", f"server 127.0.0.1:{one.port};"),
                     ("server app2:6543;", f"server 127.0.0.1:{two.port};")):
        assert text.count(old) == 1, f"docs/nginx-instances.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def balancer(instances, tmp_path):
    if not NGINX:
        if os.environ.get("REQUIRE_NGINX") == "1":
            pytest.fail("REQUIRE_NGINX=1 but nginx is not installed")
        pytest.skip("nginx is needed (apt-get install nginx)")
    one, two = instances
    tmp, port = tmp_path / "nginx", free_port()
    tmp.mkdir()
    (tmp / "site.conf").write_text(_balancer_conf(one, two, port))
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp / kind};"
                           for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\ndaemon off;\n"
        "worker_processes 1;\nevents { worker_connections 64; }\n"
        # Which instance answered each request: the test reads it from this log.
        f"http {{\n    log_format upstream '$upstream_addr \"$request\"';\n"
        f"    access_log {tmp / 'access.log'} upstream;\n{temp_paths}\n"
        f"    include {tmp / 'site.conf'};\n}}\n")
    nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"),
                              "-e", str(tmp / "error.log")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/api/v1/check/health/", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp / "error.log").read_text()
            time.sleep(0.1)
        yield base, tmp / "access.log"
    finally:
        nginx.terminate()
        nginx.wait(timeout=20)


def _answered_by(log, servers, request):
    """How many requests starting with ``request`` each server answered, per the log."""
    lines = log.read_text().splitlines()
    return [sum(1 for line in lines if line.startswith(f'127.0.0.1:{server.port} "{request}'))
            for server in servers]


def test_the_documented_balancer_keeps_an_upload_on_one_instance(instances, balancer,
                                                                 tmp_path):
    """docs/nginx-instances.conf in front of both: uploader.sh's chunks of one upload all
    reach one instance; other requests are spread over both."""
    one, two = instances
    base, log = balancer
    token = one.ticket(506, attempts=3)["token"]
    path = tmp_path / "through-the-balancer.log"
    path.write_bytes(os.urandom(5 * MiB + 3))
    done = subprocess.run(
        ["sh", str(ROOT / "scripts" / "uploader.sh"), "-f", str(path), "-t", token,
         "-u", base, "--chunk-size", "1M"],
        capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the server has exactly this file." in done.stdout
    patches = _answered_by(log, (one, two), "PATCH /api/v1/uploads/")
    assert sorted(patches) == [0, 6], patches  # 5 MiB + 3 bytes in 1 MiB chunks
    before = _answered_by(log, (one, two), "GET /api/v1/check/health/")
    for _ in range(24):
        assert requests.get(base + "/api/v1/check/health/", timeout=10).ok
    after = _answered_by(log, (one, two), "GET /api/v1/check/health/")
    spread = [a - b for a, b in zip(after, before)]
    # Random by request: both get some (all 24 on one: a chance of 1 in 8 million).
    assert sum(spread) == 24 and min(spread) > 0, spread
