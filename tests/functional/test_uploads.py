"""POST /api/v1/archives/: token answers, body formats, limits; failures leave nothing."""

import hashlib
import os

import pytest
from s3server import on_both_storages
from sqlalchemy import select

from collector.archives.models import Archive
from collector.tickets.models import Ticket


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=3)


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


@on_both_storages
def test_multipart_upload_stores_bytes_and_hashes(testapp, ticket, stored, dbsession):
    body = os.urandom(5 * 1024 * 1024 + 3)
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "../../etc/pass\x07wd", body)],
                       headers={"Upload-Token": ticket.token}, status=201)
    archive = res.json
    assert archive["name"] == "pass_wd"
    assert res.headers["Location"].endswith(f"/api/v1/archives/{archive['id']}/")
    [key] = stored.keys()
    assert stored.read(key) == body
    assert hashlib.sha256(body).hexdigest() == archive["sha256"]
    row = dbsession.get(Archive, archive["id"])
    # Over 4 MiB: md5 is left to the background job (test_md5_background.py).
    assert (row.size, row.md5, archive["md5"]) == (len(body), None, None)
    assert key == row.storage_key  # the path or object name is built from ids only
    assert stored.leftovers() == []
    assert _attempts(dbsession, ticket) == 2


def test_multipart_with_other_fields_first(testapp, ticket, data_dir):
    res = testapp.post("/api/v1/archives/", params={"note": "x" * 5000},
                       upload_files=[("file", "a.log", b"line\r\n--not-a-boundary\r\n")],
                       headers={"Upload-Token": ticket.token}, status=201)
    assert res.json["size"] == len(b"line\r\n--not-a-boundary\r\n")


@pytest.mark.parametrize("how", ["query", "disposition", "path"])
def test_raw_body_upload(testapp, ticket, how):
    body = b"raw log line\n" * 1000
    headers = {"Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}
    url = "/api/v1/archives/"
    if how == "query":
        url += "?filename=syslog.1"
    elif how == "disposition":
        headers["Content-Disposition"] = "attachment; filename*=UTF-8''%D0%BB%D0%BE%D0%B3.txt"
    if how == "path":
        res = testapp.put("/api/v1/archives/syslog.1", body, headers=headers, status=201)
    else:
        res = testapp.post(url, body, headers=headers, status=201)
    assert res.json["name"] == ("лог.txt" if how == "disposition" else "syslog.1")
    assert res.json["sha256"] == hashlib.sha256(body).hexdigest()


def test_token_answers(testapp, factory, ticket, dbsession):
    upload = [("file", "a.log", b"data")]
    assert testapp.post("/api/v1/archives/", upload_files=upload,
                        status=401).json["detail"] == "Upload-Token header is required"
    assert testapp.post("/api/v1/archives/", upload_files=upload,
                        headers={"Upload-Token": "nope"}, status=403).json["detail"]
    ticket_row = dbsession.get(Ticket, ticket.id)
    ticket_row.resolved = True
    dbsession.commit()
    locked = testapp.post("/api/v1/archives/", upload_files=upload,
                          headers={"Upload-Token": ticket.token}, status=423).json
    assert locked["detail"] == "ticket 77 already resolved"
    ticket_row.resolved, ticket_row.attempts = False, 0
    dbsession.commit()
    locked = testapp.post("/api/v1/archives/", upload_files=upload,
                          headers={"Upload-Token": ticket.token}, status=423).json
    # Why, in words, but never the token itself (a credential: see test_refused_tokens.py).
    assert locked["detail"] == "upload token expired: no upload attempts left"
    import datetime as dt

    ticket_row.attempts = 1
    ticket_row.expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    dbsession.commit()
    locked = testapp.post("/api/v1/archives/", upload_files=upload,
                          headers={"Upload-Token": ticket.token}, status=423).json
    assert "expired" in locked["detail"]
    assert dbsession.scalars(select(Archive)).all() == []


def test_uuid_tokens_of_the_original_are_accepted(testapp, ticket, dbsession):
    row = dbsession.get(Ticket, ticket.id)
    row.token = "4532de44-37eb-4ab2-9fbe-4ec5a78576b9"
    dbsession.commit()
    for form in ("4532de44-37eb-4ab2-9fbe-4ec5a78576b9", "4532de4437eb4ab29fbe4ec5a78576b9"):
        testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"x")],
                     headers={"Upload-Token": form}, status=201)


@on_both_storages
@pytest.mark.parametrize("case", ["empty-file", "empty-body", "no-file-field", "truncated",
                                  "too-large", "no-boundary"])
def test_rejected_uploads_leave_nothing_and_keep_the_attempt(
        testapp, ticket, stored, dbsession, case):
    headers = {"Upload-Token": ticket.token}
    status = 413 if case == "too-large" else 400
    if case == "empty-file":
        res = testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"")],
                           headers=headers, status=status)
    elif case == "empty-body":
        res = testapp.post("/api/v1/archives/", b"", headers=headers, status=status)
    elif case == "no-file-field":
        res = testapp.post("/api/v1/archives/", {"other": "x"}, headers=headers,
                           content_type="multipart/form-data", status=status)
    elif case == "truncated":
        body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n"
                b"\r\n" + b"a" * 100000)
        res = testapp.post("/api/v1/archives/", body, status=status, headers={
            **headers, "Content-Type": "multipart/form-data; boundary=XyZ"})
    elif case == "no-boundary":
        res = testapp.post("/api/v1/archives/", b"abc", status=status, headers={
            **headers, "Content-Type": "multipart/form-data"})
    else:
        big = b"\0" * (64 * 1024 * 1024 + 1)
        res = testapp.post("/api/v1/archives/", big, status=status, headers={
            **headers, "Content-Type": "application/octet-stream"})
    assert res.json["detail"]
    assert stored.keys() == [] and stored.leftovers() == []
    assert dbsession.scalars(select(Archive)).all() == []
    assert _attempts(dbsession, ticket) == 3


@on_both_storages
def test_too_large_multipart_content_is_refused_while_streaming(testapp, ticket, app, stored):
    # The declared length passes (multipart overhead), the file itself is one byte too big.
    app.registry.settings["upload.max_size"] = 1000
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"x" * 1001)],
                       headers={"Upload-Token": ticket.token}, status=413)
    assert "limit" in res.json["detail"]
    assert stored.keys() == [] and stored.leftovers() == []


@on_both_storages
def test_no_space_answers_507(testapp, ticket, app, dbsession):
    app.registry.settings["storage.reserve"] = 1 << 62
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"x")],
                       headers={"Upload-Token": ticket.token}, status=507)
    assert "space" in res.json["detail"] or "full" in res.json["detail"]
    assert _attempts(dbsession, ticket) == 3


@on_both_storages
def test_database_failure_after_staging_removes_the_file(testapp, ticket, stored, monkeypatch,
                                                         dbsession):
    """The row insert fails: the staged (and even a published) file must go away."""
    from collector.archives import services

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services.tickets, "consume_attempt", explode)
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"abc")],
                       headers={"Upload-Token": ticket.token}, status=500)
    assert "traceback" not in res.text.lower() and res.json["detail"]
    assert stored.keys() == [] and stored.leftovers() == []
    assert _attempts(dbsession, ticket) == 3


def _s3_error(operation):
    import botocore.exceptions

    def fail(*args, **kwargs):
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "SlowDown", "Message": "try later"}}, operation)

    return fail


@pytest.mark.parametrize("storage_kind", ["s3"])
@pytest.mark.parametrize("failing", ["upload_part", "complete_multipart_upload"])
@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_object_store_failures_answer_json_and_leave_nothing(
        testapp, ticket, app, stored, dbsession, monkeypatch, failing):
    """A part the store refuses while streaming, or a failed completion (at the vote,
    before the database commits): 503 with Retry-After, no row, no object, the attempt
    kept."""
    client = app.registry["archive_storage"].client
    monkeypatch.setattr(client, failing, _s3_error(failing))
    res = testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"abc" * 1000)],
                       headers={"Upload-Token": ticket.token},
                       status=503)
    assert res.headers["Retry-After"] == "10"
    assert "stor" in res.json["detail"] and "traceback" not in res.text.lower()
    monkeypatch.undo()
    assert stored.keys() == [] and stored.leftovers() == []
    assert dbsession.scalars(select(Archive)).all() == []
    assert _attempts(dbsession, ticket) == 3
