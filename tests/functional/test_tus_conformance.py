"""tus 1.0.0 requirements that the other tus tests do not already prove, one test each (see
docs/tus-conformance.md, whose table names the test of every requirement)."""

import base64
import datetime as dt

import pytest
from sqlalchemy import select, update

from collector.archives.models import Archive, TusUpload

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 91, attempts=5)


@pytest.fixture
def tus(testapp, ticket):
    return {**V, "Upload-Token": ticket.token}


def _create(testapp, tus, status=201, body=b"", **headers):
    return testapp.post("/api/v1/uploads/", body, headers={**tus, **headers}, status=status)


def _path(res):
    return "/" + res.headers["Location"].split("/", 3)[3]


def _patch(testapp, tus, path, offset, body, status=204, **headers):
    return testapp.patch(path, body, headers={**tus, **CHUNK, "Upload-Offset": str(offset),
                                              **headers}, status=status)


def test_options_ignores_the_tus_resumable_header(testapp):
    for version in ("0.2.2", "1.0.0", "nonsense"):
        res = testapp.options("/api/v1/uploads/", headers={"Tus-Resumable": version},
                              status=204)
        assert res.headers["Tus-Version"] == "1.0.0"
        assert res.body == b""


def test_an_unsupported_version_is_412_and_nothing_is_done(testapp, tus, dbsession):
    path = _path(_create(testapp, tus, **{"Upload-Length": "6"}))
    old = {**tus, "Tus-Resumable": "0.2.2"}
    res = _patch(testapp, old, path, 0, b"abc", status=412)
    assert res.headers["Tus-Version"] == "1.0.0"
    assert res.headers["Tus-Resumable"] == "1.0.0"
    assert "Upload-Offset" not in res.headers
    testapp.head(path, headers=old, status=412)
    testapp.delete(path, headers=old, status=412)
    _create(testapp, old, status=412, **{"Upload-Length": "6"})
    assert testapp.head(path, headers=tus).headers["Upload-Offset"] == "0"
    assert len(dbsession.scalars(select(TusUpload)).all()) == 1


@pytest.mark.commits  # the expiry is committed for the request to see
def test_unknown_and_expired_uploads_answer_without_an_offset(testapp, tus, dbsession):
    unknown = "/api/v1/uploads/" + "u" * 32
    for res in (testapp.head(unknown, headers=tus, status=404),
                _patch(testapp, tus, unknown, 0, b"abc", status=404)):
        assert "Upload-Offset" not in res.headers
        assert res.headers["Tus-Resumable"] == "1.0.0"
    path = _path(_create(testapp, tus, **{"Upload-Length": "6"}))
    dbsession.execute(update(TusUpload).values(
        expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    dbsession.commit()
    for res in (testapp.head(path, headers=tus, status=410),
                _patch(testapp, tus, path, 0, b"abc", status=410)):
        assert "Upload-Offset" not in res.headers


def test_head_echoes_the_metadata_and_says_a_length_is_deferred(testapp, tus):
    metadata = f"filename {base64.b64encode(b'a.log').decode()},flag"
    path = _path(_create(testapp, tus, **{"Upload-Defer-Length": "1",
                                          "Upload-Metadata": metadata}))
    head = testapp.head(path, headers=tus)
    assert head.headers["Upload-Metadata"] == metadata
    assert head.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in head.headers
    assert head.headers["Upload-Offset"] == "0"
    _patch(testapp, tus, path, 0, b"abc", **{"Upload-Length": "6"})
    head = testapp.head(path, headers=tus)
    assert head.headers["Upload-Length"] == "6" and "Upload-Defer-Length" not in head.headers


def test_a_deferred_length_must_be_1_and_cannot_change_once_set(testapp, tus):
    for value in ("0", "2", "yes"):
        _create(testapp, tus, status=400, **{"Upload-Defer-Length": value})
    path = _path(_create(testapp, tus, **{"Upload-Defer-Length": "1"}))
    _patch(testapp, tus, path, 0, b"abc", **{"Upload-Length": "9"})
    res = _patch(testapp, tus, path, 3, b"def", status=400, **{"Upload-Length": "8"})
    assert "cannot change" in res.json["detail"]
    assert testapp.head(path, headers=tus).headers["Upload-Offset"] == "3"


def test_creation_with_upload_needs_the_chunk_content_type(testapp, tus, dbsession):
    res = _create(testapp, tus, status=415, body=b"abc",
                  **{"Upload-Length": "6", "Content-Type": "text/plain"})
    assert res.headers["Tus-Resumable"] == "1.0.0"
    assert dbsession.scalars(select(TusUpload)).all() == []


def test_a_final_upload_takes_no_upload_length_and_no_patch(testapp, tus, dbsession):
    part = _create(testapp, tus, body=b"abc",
                   **{"Upload-Length": "3", "Upload-Concat": "partial", **CHUNK,
                      "Upload-Metadata": f"filename {base64.b64encode(b'p.log').decode()}"})
    # A partial upload is kept as it is: no archive until a final upload joins it.
    assert dbsession.scalars(select(Archive)).all() == []
    head = testapp.head(_path(part), headers=tus)
    assert (head.headers["Upload-Offset"], head.headers["Upload-Concat"]) == ("3", "partial")
    concat = {"Upload-Concat": "final;" + part.headers["Location"]}
    _create(testapp, tus, status=400, **concat, **{"Upload-Length": "3"})
    final = _create(testapp, tus, **concat)
    res = _patch(testapp, tus, _path(final), 3, b"", status=403)
    assert "Upload-Offset" not in res.headers
    head = testapp.head(_path(final), headers=tus)
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == "3"
    assert head.headers["Upload-Concat"] == "final;" + part.headers["Location"]
    # the partial upload's metadata is not the final one's
    assert "Upload-Metadata" not in head.headers
    assert dbsession.get(Archive, final.json["id"]).name != "p.log"


@pytest.mark.parametrize("actual", ["POST", "GET", "PUT"])
def test_the_method_override_is_the_method_whatever_the_request_says(testapp, tus,
                                                                     actual):
    path = _path(_create(testapp, tus, **{"Upload-Length": "3"}))
    patched = testapp.request(path, method=actual, body=b"abc", headers={
        **tus, **CHUNK, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
        status=204)
    assert patched.headers["Upload-Offset"] == "3"
    head = testapp.request(path, method=actual, headers={
        **tus, "X-HTTP-Method-Override": "head"}, status=200)
    assert head.headers["Upload-Offset"] == "3"
    testapp.request(path, method=actual, headers={
        **tus, "X-HTTP-Method-Override": "DELETE"}, status=204)
    testapp.head(path, headers=tus, status=404)
    # a method these endpoints lack is that method, not the request's own
    testapp.request("/api/v1/uploads/", method=actual, headers={
        **tus, "X-HTTP-Method-Override": "PUT"}, status=405)
