"""Concurrent uploads against a real waitress server: attempts are never overdrawn."""

import concurrent.futures
import hashlib
import http.client
import json
import os
import urllib.parse

import pytest
from sqlalchemy import select

from collector.archives.models import Archive
from collector.tickets.models import Ticket

# On SQLite too: one writer at a time there, row locks on PostgreSQL.
pytestmark = pytest.mark.sqlite


def _upload(base, token, body, name):
    url = urllib.parse.urlsplit(base)
    boundary = "----collector-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("POST", "/api/v1/archives/", body=head + body + tail, headers={
            "Upload-Token": token, "Content-Type": f"multipart/form-data; boundary={boundary}"})
        res = conn.getresponse()
        return res.status, json.loads(res.read())
    finally:
        conn.close()


def test_exactly_three_of_eight_concurrent_uploads_succeed(live_server, factory, dbsession,
                                                           data_dir):
    ticket = factory.ticket(factory.platform("vm6"), 3, attempts=3)
    bodies = [os.urandom(2 * 1024 * 1024 + i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: _upload(live_server, ticket.token, bodies[i],
                                                  f"part{i}.bin"), range(8)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 3 + [423] * 5, results
    dbsession.expire_all()
    assert dbsession.get(Ticket, ticket.id).attempts == 0
    archives = dbsession.scalars(select(Archive)).all()
    assert len(archives) == 3
    by_hash = {hashlib.sha256(b).hexdigest(): b for b in bodies}
    for archive in archives:
        stored = (data_dir / "archives" / archive.storage_key[:2] / archive.storage_key)
        assert by_hash[archive.sha256] == stored.read_bytes()
    # the refused uploads left no files behind
    assert len([p for p in (data_dir / "archives").rglob("*") if p.is_file()]) == 3
    assert list((data_dir / "tmp").iterdir()) == []
    for status, body in results:
        if status == 423:
            assert "no upload attempts left" in body["detail"]


def test_health_answers_while_uploads_run(live_server, factory):
    ticket = factory.ticket(factory.platform("vm6"), 4, attempts=10)
    body = os.urandom(8 * 1024 * 1024)
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        uploads = [pool.submit(_upload, live_server, ticket.token, body, f"{i}.bin")
                   for i in range(4)]
        url = urllib.parse.urlsplit(live_server)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        conn.request("GET", "/api/v1/check/health/")
        assert conn.getresponse().status == 200
        conn.close()
        assert all(f.result()[0] == 201 for f in uploads)


def test_large_upload_through_waitress_spool(live_server, factory, app, data_dir):
    """Past SpoolReader's 64 MiB step: the spool is freed as read, the bytes stay exact."""
    app.registry.settings["upload.max_size"] = 256 * 1024 * 1024
    ticket = factory.ticket(factory.platform("vm6"), 5)
    body = os.urandom(1024 * 1024) * 150 + b"tail"
    status, archive = _upload(live_server, ticket.token, body, "big.bin")
    assert status == 201, archive
    assert archive["size"] == len(body)
    assert archive["sha256"] == hashlib.sha256(body).hexdigest()
