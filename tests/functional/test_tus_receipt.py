"""The receipt of a tus upload: the last PATCH answers 204 with it in headers (tus allows no
body there), and ``GET`` on the upload's URL gives it whole, to its own ticket's token only.
"""

import base64
import datetime as dt
import hashlib

import pytest
from sqlalchemy import update

from collector.archives.models import TusUpload

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}
NAME = base64.b64encode("journal é.tar.gz".encode()).decode()


@pytest.fixture
def tickets(factory):
    return (factory.ticket(factory.platform("vm6"), 77, attempts=3),
            factory.ticket(factory.platform("other"), 78, attempts=3))


def _create(testapp, token, length=6, **headers):
    res = testapp.post("/api/v1/uploads/", headers={
        **V, "Upload-Token": token, "Upload-Length": str(length),
        "Upload-Metadata": f"filename {NAME}", **headers}, status=201)
    return "/" + res.headers["Location"].split("/", 3)[3]


def _patch(testapp, path, token, offset, body, status=204):
    return testapp.patch(path, body, headers={**V, **CHUNK, "Upload-Token": token,
                                              "Upload-Offset": str(offset)}, status=status)


def _get(testapp, path, token, status=200, **headers):
    return testapp.get(path, headers={"Upload-Token": token, **headers}, status=status)


def test_the_last_chunk_answers_204_and_get_gives_the_receipt(testapp, tickets):
    own, _ = tickets
    path = _create(testapp, own.token)
    first = _patch(testapp, path, own.token, 0, b"abc")
    assert "Upload-Archive-Id" not in first.headers
    assert not any(name.startswith("Upload-Receipt") for name in first.headers)
    last = _patch(testapp, path, own.token, 3, b"def")
    assert last.body == b"" and last.content_type is None
    receipt = _get(testapp, path, own.token).json
    assert receipt["sha256"] == hashlib.sha256(b"abcdef").hexdigest()
    assert receipt["md5"] == hashlib.md5(b"abcdef").hexdigest()
    assert (receipt["size"], receipt["ticket"], receipt["name"]) == (6, 77, "journal é.tar.gz")
    assert last.headers["Upload-Archive-Id"] == str(receipt["id"])
    assert last.headers["Upload-Receipt-Sha256"] == receipt["sha256"]
    assert last.headers["Upload-Receipt-Md5"] == receipt["md5"]
    assert last.headers["Upload-Receipt-Size"] == "6"
    assert last.headers["Upload-Offset"] == "6"
    # The same receipt, asked again and again: nothing is spent or changed by asking.
    again = _get(testapp, path, own.token, **V)
    assert again.json == receipt
    assert again.headers["Cache-Control"] == "no-store"
    assert again.headers["Tus-Resumable"] == "1.0.0"


def test_creation_with_upload_that_completes_gives_headers_and_body(testapp, tickets):
    own, _ = tickets
    res = testapp.post("/api/v1/uploads/", b"abcdef", headers={
        **V, **CHUNK, "Upload-Token": own.token, "Upload-Length": "6"}, status=201)
    assert res.json["sha256"] == res.headers["Upload-Receipt-Sha256"]
    assert res.headers["Upload-Archive-Id"] == str(res.json["id"])
    path = "/" + res.headers["Location"].split("/", 3)[3]
    assert _get(testapp, path, own.token).json == res.json


@pytest.mark.commits  # a refused token is recorded in a transaction of its own
@pytest.mark.parametrize("token", [None, "", "x" * 43, "not a token", "%00", "a" * 5000])
def test_no_receipt_without_the_ticket_token(testapp, tickets, token):
    own, _ = tickets
    path = _create(testapp, own.token)
    _patch(testapp, path, own.token, 0, b"abcdef")
    headers = {} if token is None else {"Upload-Token": token}
    res = testapp.get(path, headers=headers, status="*")
    assert res.status_int in (400, 401, 403)
    assert "sha256" not in res.json and "detail" in res.json


def test_another_tickets_token_gets_404_as_for_an_unknown_upload(testapp, tickets):
    own, other = tickets
    path = _create(testapp, own.token)
    _patch(testapp, path, own.token, 0, b"abcdef")
    foreign = _get(testapp, path, other.token, status=404)
    unknown = _get(testapp, path[:-4] + "AAAA", own.token, status=404)
    assert foreign.json == unknown.json == {"detail": "Not found."}
    assert foreign.headers["Tus-Resumable"] == unknown.headers["Tus-Resumable"]


def test_an_unfinished_upload_has_no_receipt_yet(testapp, tickets):
    own, _ = tickets
    path = _create(testapp, own.token)
    _patch(testapp, path, own.token, 0, b"abc")
    res = _get(testapp, path, own.token, status=409)
    assert "3 of 6 bytes" in res.json["detail"]
    res = testapp.post("/api/v1/uploads/", headers={
        **V, "Upload-Token": own.token, "Upload-Defer-Length": "1"}, status=201)
    deferred = "/" + res.headers["Location"].split("/", 3)[3]
    assert "0 bytes received" in _get(testapp, deferred, own.token, status=409).json["detail"]


def test_a_partial_upload_has_no_receipt(testapp, tickets):
    own, _ = tickets
    path = _create(testapp, own.token, **{"Upload-Concat": "partial"})
    _patch(testapp, path, own.token, 0, b"abcdef")
    assert "partial" in _get(testapp, path, own.token, status=409).json["detail"]


@pytest.mark.commits  # the expired upload's end is recorded in a transaction of its own
def test_an_expired_unfinished_upload_is_gone_but_a_finished_one_keeps_its_receipt(
        testapp, tickets, dbsession):
    own, _ = tickets
    unfinished, finished = _create(testapp, own.token), _create(testapp, own.token)
    _patch(testapp, unfinished, own.token, 0, b"abc")
    _patch(testapp, finished, own.token, 0, b"abcdef")
    receipt = _get(testapp, finished, own.token).json
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    dbsession.execute(update(TusUpload).values(expires_at=past))
    dbsession.commit()
    assert "expired" in _get(testapp, unfinished, own.token, status=410).json["detail"]
    # Until purge removes it, the finished upload still answers its receipt.
    assert _get(testapp, finished, own.token).json == receipt


def test_a_deleted_archive_is_gone(testapp, tickets, staff):
    own, _ = tickets
    path = _create(testapp, own.token)
    _patch(testapp, path, own.token, 0, b"abcdef")
    receipt = _get(testapp, path, own.token).json
    testapp.delete(f"/api/v1/archives/{receipt['id']}/", headers=staff.headers, status=204)
    assert "deleted" in _get(testapp, path, own.token, status=410).json["detail"]
    gone = _patch(testapp, path, own.token, 6, b"", status=410)
    assert "Upload-Receipt-Sha256" not in gone.headers
