"""kill -9 of a real ``collector serve`` on S3 storage while a tus upload becomes an
archive: after the storage manager's vote (the archive object assembled from the
segments and completed, the database not committed) and after the commit (the segments
not yet removed, the answer not sent). After a restart the client finishes (or asks its
receipt again), the archive is byte-identical and recorded once, the attempt spent once,
and ``collector purge`` leaves exactly the archives' objects in the bucket.
"""

import concurrent.futures
import hashlib
import os

import pytest
from serverproc import MiB, Server, create, database, head, patch, receipt

import collector.models  # noqa: F401 (every mapper)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("point", ["vote", "committed"])
def test_killed_while_the_archive_is_assembled(tmp_path, s3_server, backend, point):
    storage = s3_server.settings()
    prefix = storage["storage.url"].split("/", 3)[3]
    with database(backend, tmp_path / "db") as db_url:
        server = Server(tmp_path / "srv", db_url).setup()
        server.extra_env = {"STORAGE_URL": storage["storage.url"],
                            "STORAGE_ENDPOINT_URL": storage["storage.endpoint_url"],
                            "STORAGE_REGION": storage["storage.region"],
                            "STORAGE_QUOTA": "10GiB"}
        try:
            server.start(pause_at=point)
            ticket = server.ticket(601, attempts=3)
            token = ticket["token"]
            body = os.urandom(19 * MiB + 7)
            path = create(server, token, len(body))
            status, _, data = patch(server, token, path, 0, body[:12 * MiB])
            assert status == 204, data
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                last = pool.submit(patch, server, token, path, 12 * MiB, body[12 * MiB:])
                server.wait_paused()
                server.kill()
                with pytest.raises(OSError):
                    last.result(timeout=60)
            server.start()
            offset = int(head(server, token, path)["upload-offset"])
            if point == "vote":
                assert offset == 12 * MiB  # not committed: the upload resumes
                status, headers, _ = patch(server, token, path, offset, body[offset:])
            else:
                assert offset == len(body)  # committed: the receipt is asked again
                status, headers, _ = patch(server, token, path, offset, b"")
            got = receipt(server, token, path, status, headers)
            digest = hashlib.sha256(body).hexdigest()
            assert got["sha256"] == digest
            assert server.download_sha256(got["id"]) == digest
            assert [a["id"] for a in server.api("GET", "/api/v1/archives/")] == \
                [got["id"]]
            assert server.api("GET", "/api/v1/tickets/601/")["attempts"] == 2
            out = server.collector("purge", "--stale-hours", "0")
            if point == "vote":
                assert "removed orphan s3://" in out  # the archive completed at the vote
            else:
                assert "removed orphan upload segments" in out
            key = _archive_key(server, got["id"])
            objects = s3_server.objects(prefix + "/")
            assert list(objects) == [f"{prefix}/archives/{key[:2]}/{key}"], objects
            assert s3_server.multipart_uploads(prefix + "/") == []
        finally:
            server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


def _archive_key(server, archive_id):
    from collector.archives.models import Archive

    with server.session() as session:
        return session.get(Archive, archive_id).storage_key
