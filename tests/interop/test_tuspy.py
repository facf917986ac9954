"""tus interop with the PyPI client tuspy (nobody here wrote it), against a real waitress."""

import concurrent.futures
import hashlib
import http.client
import io
import os
import urllib.parse

import pytest
from sqlalchemy import select
from tusclient import client as tus_client

from collector.archives.models import Archive
from collector.tickets.models import Ticket

pytestmark = pytest.mark.slow


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 88, attempts=10)


def _client(live_server, ticket):
    return tus_client.TusClient(f"{live_server}/api/v1/uploads/",
                                headers={"Upload-Token": ticket.token})


@pytest.mark.parametrize("chunk_size", [256 * 1024, 1024 * 1024 + 7, 8 * 1024 * 1024])
def test_tuspy_uploads_with_several_chunk_sizes(live_server, ticket, dbsession, data_dir,
                                                chunk_size):
    body = os.urandom(5 * 1024 * 1024 + 123)
    uploader = _client(live_server, ticket).uploader(
        file_stream=io.BytesIO(body), chunk_size=chunk_size,
        metadata={"filename": "tuspy.bin"}, upload_checksum=chunk_size < 1024 * 1024)
    uploader.upload()
    assert uploader.offset == len(body)
    dbsession.expire_all()
    [archive] = dbsession.scalars(select(Archive)).all()
    assert archive.sha256 == hashlib.sha256(body).hexdigest()
    assert (archive.name, archive.size) == ("tuspy.bin", len(body))
    stored = data_dir / "archives" / archive.storage_key[:2] / archive.storage_key
    assert stored.read_bytes() == body
    assert _attempts(dbsession, ticket) == 9


def test_tuspy_resumes_with_a_new_uploader(live_server, ticket, dbsession, data_dir):
    body = os.urandom(4 * 1024 * 1024 + 1)
    first = _client(live_server, ticket).uploader(
        file_stream=io.BytesIO(body), chunk_size=512 * 1024, metadata={"filename": "r.bin"})
    first.upload(stop_at=2 * 1024 * 1024)
    assert first.offset == 2 * 1024 * 1024
    url = first.url
    # a new process: a new client and uploader for the same URL, which asks the offset
    second = _client(live_server, ticket).uploader(
        file_stream=io.BytesIO(body), url=url, chunk_size=1024 * 1024)
    assert second.offset == 2 * 1024 * 1024
    second.upload()
    dbsession.expire_all()
    [archive] = dbsession.scalars(select(Archive)).all()
    stored = data_dir / "archives" / archive.storage_key[:2] / archive.storage_key
    assert stored.read_bytes() == body
    assert archive.sha256 == hashlib.sha256(body).hexdigest()
    assert _attempts(dbsession, ticket) == 9  # moved once


def _patch(live_server, path, token, offset, body):
    url = urllib.parse.urlsplit(live_server)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("PATCH", path, body=body, headers={
            "Tus-Resumable": "1.0.0", "Upload-Token": token, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        res = conn.getresponse()
        res.read()
        return res.status, res.getheader("Upload-Offset")
    finally:
        conn.close()


def test_two_concurrent_patches_never_interleave(live_server, ticket, dbsession, data_dir):
    size = 24 * 1024 * 1024
    uploader = _client(live_server, ticket).uploader(
        file_stream=io.BytesIO(b"\0" * (2 * size)), chunk_size=size)
    uploader.set_url(uploader.create_url())
    path = urllib.parse.urlsplit(uploader.url).path
    bodies = [os.urandom(size), os.urandom(size)]
    # Both at offset 0: whether they overlap (the lock answers) or not (the offset does),
    # exactly one is stored and the file holds its bytes only.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda b: _patch(live_server, path, ticket.token, 0, b),
                                bodies))
    statuses = [status for status, _ in results]
    assert sorted(statuses) == [204, 409], results
    winner = bodies[statuses.index(204)]
    [partial] = (data_dir / "uploads").iterdir()
    assert partial.read_bytes() == winner
    status, offset = _patch(live_server, path, ticket.token, size, winner)
    assert (status, offset) == (204, str(2 * size))
    dbsession.expire_all()
    [archive] = dbsession.scalars(select(Archive)).all()
    assert archive.sha256 == hashlib.sha256(winner * 2).hexdigest()
