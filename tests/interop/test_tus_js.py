"""tus interop with the npm client tus-js-client under Node, against a real waitress.

tus-js-client is installed from npm by the ``tus_js`` fixture, once, into the gitignored
``var/interop/`` (one directory per pinned version, reused while it exists); it is never
committed. The upload itself is ``tus_js_upload.mjs`` beside this file, which prints one
JSON line per event. Without ``node``/``npm`` the tests are skipped with the reason; with
``REQUIRE_NODE=1`` (``.ci/run`` sets it) they fail instead.
"""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import urllib.request

import pytest
from npm_package import NpmUnavailable, npm_package
from sqlalchemy import select

from collector.archives.models import Archive
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow

TUS_JS_VERSION = "4.3.1"
NODE_MIN_MAJOR = 18  # tus-js-client's engines field
REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = pathlib.Path(__file__).with_name("tus_js_upload.mjs")
MiB = 1024 * 1024
SIZE = 5 * MiB + 123
NAME = "tus-js logs ü.tar.gz"  # a space and a non-ASCII letter: base64 of UTF-8 metadata
TIMEOUT = 120


def _unavailable(reason):
    if os.environ.get("REQUIRE_NODE") == "1":
        pytest.fail(f"REQUIRE_NODE=1 but {reason}", pytrace=False)
    pytest.skip(f"tus-js-client tests need Node >= {NODE_MIN_MAJOR} and npm: {reason} "
                "(REQUIRE_NODE=1 makes this a failure)")


@pytest.fixture(scope="session")
def tus_js():
    """``(node, prefix)``: the node executable and the npm prefix holding tus-js-client."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable(f"`{'node' if node is None else 'npm'}` is not on PATH")
    version = subprocess.run([node, "--version"], capture_output=True, text=True,
                             check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < NODE_MIN_MAJOR:
        _unavailable(f"node is {version}")
    try:
        prefix = npm_package("tus-js-client", TUS_JS_VERSION, "interop")
    except NpmUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    return node, prefix


class Run:
    """One finished run of the script: its exit status and its events."""

    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
        self.stderr = stderr

    def of(self, kind):
        return [e for e in self.events if e["event"] == kind]

    @property
    def success(self):
        assert self.returncode == 0, (self.events, self.stderr)
        [success] = self.of("success")
        return success

    @property
    def requests(self):
        return [(e["method"], e["offset"]) for e in self.of("request")]

    def assert_every_answer_ok(self):
        bad = [e for e in self.of("response") if not 200 <= e["status"] < 300]
        assert not bad, bad


def _command(tus_js, live_server, ticket, source, *options):
    """The script's command line and environment; ``options`` are ``--name=value``
    (a value may start with "-")."""
    node, prefix = tus_js
    command = [node, str(SCRIPT), f"--modules={prefix}",
               f"--endpoint={live_server}/api/v1/uploads/", f"--file={source}",
               f"--filename={NAME}", "--no-retry", *options]
    return command, {**os.environ, "UPLOAD_TOKEN": ticket.token}


def _run(tus_js, live_server, ticket, source, *options):
    command, env = _command(tus_js, live_server, ticket, source, *options)
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    return Run(done.returncode, done.stdout, done.stderr)


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


@pytest.fixture
def settings(settings):
    """The md5 worker on (live_server commits): the 5 MiB archive's md5 comes from it."""
    return {**settings, "md5.worker": "true"}


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 89, attempts=10)


@pytest.fixture
def source(tmp_path):
    body = os.urandom(SIZE)
    path = tmp_path / "source.bin"
    path.write_bytes(body)
    return path


def _receipt(url, ticket):
    """The JSON receipt, by GET on the upload's URL (the last PATCH's 204 has no body)."""
    request = urllib.request.Request(url, headers={"Upload-Token": ticket.token})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _assert_archived(app, dbsession, data_dir, ticket, source, success):
    """One archive with the source's bytes, name and hashes (the md5 once the server's
    background job has computed it: over 4 MiB); one attempt spent."""
    body = source.read_bytes()
    assert app.registry["md5_worker"].join(60)
    dbsession.expire_all()
    [archive] = dbsession.scalars(select(Archive)).all()
    assert archive.ticket_id == ticket.id
    assert archive.sha256 == hashlib.sha256(body).hexdigest()
    assert archive.md5 == hashlib.md5(body).hexdigest()
    assert (archive.name, archive.size) == (NAME, len(body))
    stored = data_dir / "archives" / archive.storage_key[:2] / archive.storage_key
    assert stored.read_bytes() == body
    assert success["archive_id"] == str(archive.id)
    assert _attempts(dbsession, ticket) == 9
    # No partial file is left behind (partials of a concatenation are removed once joined).
    assert list((data_dir / "uploads").iterdir()) == []
    return archive


@pytest.mark.parametrize("chunk_size", [256 * 1024, MiB + 7, None])
def test_tus_js_uploads_with_several_chunk_sizes(tus_js, app, live_server, ticket, source,
                                                 dbsession, data_dir, chunk_size):
    options = [f"--chunk-size={chunk_size}"] if chunk_size else []  # None: one PATCH
    run = _run(tus_js, live_server, ticket, source, *options)
    success = run.success
    run.assert_every_answer_ok()
    patches = -(-SIZE // chunk_size) if chunk_size else 1
    offsets = [0] + [min(SIZE, i * (chunk_size or SIZE)) for i in range(1, patches)]
    assert run.requests == [("POST", None)] + [("PATCH", str(o)) for o in offsets]
    assert success["status"] == 204  # tus-js-client takes the bodiless 204 as success
    archive = _assert_archived(app, dbsession, data_dir, ticket, source, success)
    receipt = _receipt(success["url"], ticket)
    assert (receipt["id"], receipt["ticket"], receipt["name"], receipt["size"],
            receipt["sha256"]) == (archive.id, 89, NAME, SIZE, archive.sha256)


def test_tus_js_resumes_after_kill_9(tus_js, app, live_server, ticket, source, dbsession,
                                     data_dir):
    chunk = 256 * 1024
    command, env = _command(tus_js, live_server, ticket, source, f"--chunk-size={chunk}")
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    url, reported = None, 0
    try:
        for line in process.stdout:
            event = json.loads(line)
            if event["event"] == "url":
                url = event["url"]
            elif event["event"] == "chunk" and event["offset"] >= SIZE // 2:
                reported = event["offset"]
                break
            assert event["event"] != "success", "the upload finished before the kill"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()
    assert url and reported >= SIZE // 2
    assert _attempts(dbsession, ticket) == 9  # reserved at creation

    # A second process, given the upload URL: it asks the offset (HEAD) and goes on from
    # there; the chunk in flight when the first was killed is lost, nothing else.
    run = _run(tus_js, live_server, ticket, source, f"--chunk-size={MiB}",
               f"--upload-url={url}")
    success = run.success
    run.assert_every_answer_ok()
    methods = [method for method, _ in run.requests]
    assert methods[0] == "HEAD" and "POST" not in methods
    resumed_at = int(run.requests[1][1])
    assert reported <= resumed_at < SIZE and resumed_at % chunk == 0
    assert success["url"] == url
    _assert_archived(app, dbsession, data_dir, ticket, source, success)


def test_tus_js_resumes_after_abort_from_its_url_storage(tus_js, app, live_server, ticket,
                                                         source, dbsession, data_dir,
                                                         tmp_path):
    storage = tmp_path / "tus-urls.json"
    first = _run(tus_js, live_server, ticket, source, f"--chunk-size={MiB}",
                 f"--url-storage={storage}", f"--abort-after={2 * MiB}")
    assert first.returncode == 0, (first.events, first.stderr)
    [aborted] = first.of("aborted")
    assert aborted["offset"] == 2 * MiB and not first.of("success")
    [url] = [e["url"] for e in first.of("url")]

    # The same file again: tus-js-client finds it by its fingerprint in the URL storage.
    second = _run(tus_js, live_server, ticket, source, f"--chunk-size={MiB}",
                  f"--url-storage={storage}")
    success = second.success
    second.assert_every_answer_ok()
    assert second.requests[:2] == [("HEAD", None), ("PATCH", str(2 * MiB))]
    assert "POST" not in [method for method, _ in second.requests]
    assert success["url"] == url
    _assert_archived(app, dbsession, data_dir, ticket, source, success)


def test_tus_js_parallel_uploads_concatenate(tus_js, app, live_server, ticket, source, dbsession,
                                             data_dir):
    run = _run(tus_js, live_server, ticket, source, "--parallel=3",
               f"--chunk-size={MiB}")
    success = run.success
    run.assert_every_answer_ok()
    posts = [e for e in run.of("request") if e["method"] == "POST"]
    assert [e["concat"] for e in posts[:3]] == ["partial"] * 3
    final = posts[3]["concat"]
    assert len(posts) == 4 and final.startswith("final;") and len(final.split()) == 3
    # The final upload is an archive the moment it is created: 201 with the receipt.
    assert success["status"] == 201
    archive = _assert_archived(app, dbsession, data_dir, ticket, source, success)
    assert success["receipt"]["sha256"] == archive.sha256


@pytest.mark.parametrize("chunk_size", [MiB + 7, None])
def test_tus_js_uploads_data_during_creation(tus_js, app, live_server, ticket, source, dbsession,
                                             data_dir, chunk_size):
    options = [f"--chunk-size={chunk_size}"] if chunk_size else []
    run = _run(tus_js, live_server, ticket, source, "--data-during-creation", *options)
    success = run.success
    run.assert_every_answer_ok()
    methods = [method for method, _ in run.requests]
    if chunk_size:
        # The first chunk rides on the POST, the rest follow as PATCHes.
        assert methods == ["POST"] + ["PATCH"] * (-(-SIZE // chunk_size) - 1)
        assert run.requests[1] == ("PATCH", str(chunk_size))
        assert success["status"] == 204
    else:
        # The whole file in the creation request: it answers 201 with the receipt.
        assert methods == ["POST"] and success["status"] == 201
    _assert_archived(app, dbsession, data_dir, ticket, source, success)


def test_tus_js_run_again_after_success_spends_nothing(tus_js, app, live_server, ticket, source,
                                                       dbsession, data_dir, tmp_path):
    storage = tmp_path / "tus-urls.json"
    first = _run(tus_js, live_server, ticket, source, f"--url-storage={storage}")
    url = first.success["url"]
    # The customer runs the same upload again: the stored URL's HEAD says it is complete
    # (with the archive id), so nothing is sent and no second attempt or archive appears.
    second = _run(tus_js, live_server, ticket, source, f"--url-storage={storage}")
    success = second.success
    second.assert_every_answer_ok()
    assert second.requests == [("HEAD", None)]
    assert (success["url"], success["status"]) == (url, 200)
    _assert_archived(app, dbsession, data_dir, ticket, source, success)


def test_tus_js_abort_with_terminate_gives_the_attempt_back(tus_js, live_server, ticket,
                                                            source, dbsession, data_dir):
    run = _run(tus_js, live_server, ticket, source, f"--chunk-size={MiB}",
               f"--abort-after={MiB}", "--terminate")
    assert run.returncode == 0, (run.events, run.stderr)
    assert run.of("aborted") and not run.of("success")
    run.assert_every_answer_ok()
    [url] = [e["url"] for e in run.of("url")]
    assert [(e["method"], e["url"]) for e in run.of("request")][-1] == ("DELETE", url)
    dbsession.expire_all()
    assert dbsession.scalars(select(Archive)).all() == []
    assert list((data_dir / "uploads").iterdir()) == []
    assert _attempts(dbsession, ticket) == 10
