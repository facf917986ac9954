"""kill -9 of a real ``collector serve`` keeping its archives on S3 (moto's server), at
seeded random points of single-request uploads.

The same runs as ``test_crash.py`` (its seed, its client, its kill points) with
``STORAGE_URL`` pointing at a prefix of its own in the test session's moto bucket
(tests/s3server.py). What a crash can leave on S3 differs from the local disk:

* ``stage`` (killed while the body is read, hashed and sent in parts) and ``precommit``
  (every part sent, the row flushed): an **unfinished multipart upload**;
* ``vote`` (the upload completed, the database not committed): an **object with no row**;
* ``receiving`` and ``committed``: nothing.

After the restart the client sends the upload again; then every archive of the ticket has
the file's bytes (its object's sha256, a staff download's and the row's), no row points to
a missing object, ``collector purge --stale-hours 0`` removes exactly the objects and
multipart uploads the crash left (what its ``--dry-run`` names) and afterwards the prefix
holds exactly the rows' objects and no multipart upload; the ticket's attempts are its
first count minus its archives; the server logged no traceback. Nothing of a single
request stays on the local disk (``DATA_DIR/tmp`` is empty).

tus uploads on S3 (segment objects) have their own crash test:
tests/interop/test_tus_crash_s3.py. ``CRASH_SEED`` replays a failure as in test_crash.py;
``CRASH_S3_RUNS`` (default: one per kill point, 5) sets the number of runs per database.
"""

import hashlib
import os
import random
import re

import pytest
from s3server import ENVIRON
from serverproc import MiB, Server, announce, database, files_under
from sqlalchemy import select
from test_crash import SEED, crash_single, post_single, scenarios

from collector.archives.models import Archive

pytestmark = pytest.mark.slow

POINTS = [("single", "receiving"), ("single", "stage"), ("single", "precommit"),
          ("single", "vote"), ("single", "committed")]
# One run per kill point by default; CRASH_S3_RUNS for a soak.
RUNS = int(os.environ.get("CRASH_S3_RUNS") or len(POINTS))
# Up to 20 MiB: bodies above a part (8 MiB) have parts sent when the server dies.
RUN_LIST = scenarios(SEED ^ 0x53335333, RUNS, POINTS, sizes=(2 * MiB, 20 * MiB))
LEAVES_UPLOAD = {"stage", "precommit"}
LEAVES_OBJECT = {"vote"}

# The setting each S3 value of tests/s3server.py's settings() is read from.
_VARIABLES = {"storage.url": "STORAGE_URL", "storage.endpoint_url": "STORAGE_ENDPOINT_URL",
              "storage.region": "STORAGE_REGION", "storage.quota": "STORAGE_QUOTA"}


class S3View:
    """What the server keeps in its prefix of the bucket, seen from the test."""

    def __init__(self, s3_server, settings):
        self.server = s3_server
        self.client = s3_server.client()
        self.bucket = s3_server.bucket
        self.prefix = settings["storage.url"].split("/", 3)[3] + "/archives/"

    def name(self, key):
        return f"{self.prefix}{key[:2]}/{key}"

    def objects(self):
        return set(self.server.objects(self.prefix))

    def uploads(self):
        """``{(object name, upload id)}`` of the unfinished multipart uploads."""
        return {(u["Key"], u["UploadId"]) for u in self.server.multipart_uploads(self.prefix)}

    def sha256(self, key):
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=self.name(key))["Body"]
        for chunk in body.iter_chunks(MiB):
            digest.update(chunk)
        return digest.hexdigest()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def s3_crash_server(request, tmp_path_factory, s3_server):
    announce(request, f"test_crash_s3 ({request.param}): CRASH_SEED={SEED} "
                      f"CRASH_S3_RUNS={RUNS}")
    directory = tmp_path_factory.mktemp(f"crash-s3-{request.param}")
    settings = s3_server.settings()
    with database(request.param, directory / "db") as db_url:
        server = Server(directory / "server", db_url)
        server.extra_env = {**ENVIRON, **{_VARIABLES[k]: v for k, v in settings.items()}}
        server.setup()
        server.s3 = S3View(s3_server, settings)
        try:
            yield server
        finally:
            server.stop()


def rows(server):
    with server.session() as session:
        return list(session.scalars(select(Archive)))


def check_archives(server, ticket, body, expected):
    """The ticket's archives are ``expected`` copies of ``body``; every archive row's
    object exists and has its row's sha256 (no row points to a missing object)."""
    sha256 = hashlib.sha256(body).hexdigest()
    listed = server.archives_of(ticket["number"])
    assert len(listed) == expected, listed
    for archive in listed:
        assert (archive["size"], archive["sha256"], archive["md5"]) == (
            len(body), sha256, hashlib.md5(body).hexdigest())
        assert server.download_sha256(archive["id"]) == sha256
    stored = server.s3.objects()
    for archive in rows(server):
        assert server.s3.name(archive.storage_key) in stored, \
            f"archive {archive.id} has no object"
        assert server.s3.sha256(archive.storage_key) == archive.sha256


def purge_removes(server):
    """``purge --dry-run`` removes nothing and names what ``purge`` removes; afterwards
    the prefix holds exactly the rows' objects and no multipart upload. Returns what was
    removed: object names and ``(object name, upload id)`` of multipart uploads."""
    before = (server.s3.objects(), server.s3.uploads())
    dry = server.collector("purge", "--dry-run", "--stale-hours", "0")
    assert (server.s3.objects(), server.s3.uploads()) == before, "a dry run removed"
    real = server.collector("purge", "--stale-hours", "0")
    bucket = re.escape(server.s3.bucket)

    def named(output, verb):
        objects = re.findall(rf"^{verb} orphan s3://{bucket}/(\S+)$", output, re.MULTILINE)
        uploads = re.findall(rf"^{verb} stale staging multipart upload s3://{bucket}/(\S+) "
                             r"\((\S+)\)$", output, re.MULTILINE)
        return sorted(objects), sorted(uploads)

    removed = named(real, "removed")
    assert named(dry, "would remove") == removed
    assert sorted(before[0] - server.s3.objects()) == removed[0]
    assert sorted(before[1] - server.s3.uploads()) == removed[1]
    assert server.s3.objects() == {server.s3.name(a.storage_key) for a in rows(server)}
    assert server.s3.uploads() == set()
    assert "would remove 0 file(s)" in server.collector("purge", "--dry-run",
                                                        "--stale-hours", "0")
    return removed


@pytest.mark.parametrize("index", range(len(RUN_LIST)), ids=lambda i: "run{:02d}-{}".format(
    i, RUN_LIST[i]["point"]))
def test_killed_s3_server_restarts_and_nothing_is_lost(s3_crash_server, index):
    server, run = s3_crash_server, RUN_LIST[index]
    print(f"CRASH_SEED={SEED} CRASH_S3_RUNS={RUNS} run{index:02d}: {run}")
    body = random.Random(run["seed"]).randbytes(run["size"])
    point = run["point"]
    server.stop()
    server.start(pause_at=None if point == "receiving" else point,
                 pause_after=run["after"])
    ticket = server.ticket(7000 + index, attempts=run["attempts"])

    where = crash_single(server, run, ticket, body, staging_files=False)
    left = (server.s3.objects(), server.s3.uploads())
    if point in ("stage", "precommit"):
        # The crash's multipart upload is there, unfinished, under the staged key.
        key = where["staging"] if point == "stage" else where["staged"][0]
        assert {name for name, _ in left[1]} == {server.s3.name(key)}
        if point == "stage":
            assert where["written"] >= run["after"]
    if point == "vote":
        [key] = where["staged"]
        assert server.s3.name(key) in left[0]
    server.start()
    status, _, data = post_single(server, ticket["token"], body, run["multipart"])
    assert status == 201, data

    copies = 2 if point == "committed" else 1
    check_archives(server, ticket, body, copies)
    referenced = {server.s3.name(a.storage_key) for a in rows(server)}
    objects = sorted((left[0] & server.s3.objects()) - referenced)
    uploads = sorted(left[1] & server.s3.uploads())
    assert len(objects) == (1 if point in LEAVES_OBJECT else 0), objects
    assert len(uploads) == (1 if point in LEAVES_UPLOAD else 0), uploads
    assert purge_removes(server) == (objects, uploads)
    check_archives(server, ticket, body, copies)
    attempts = server.api("GET", f"/api/v1/tickets/{ticket['number']}/")["attempts"]
    assert attempts == run["attempts"] - copies
    # A single request on S3 keeps nothing on the local disk, not even after a crash.
    assert files_under(server.data_dir / "tmp") == []
    assert not (server.data_dir / "archives").exists() or \
        files_under(server.data_dir / "archives") == []
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
    server.stop()
