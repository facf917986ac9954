"""What one upload token may hold unfinished, and what happens to it when its ticket ends.

Partial uploads (``Upload-Concat: partial``) spend no attempt, so the bounds here are what
stops one token from filling the disk unseen: at most ``UPLOAD_UNFINISHED_MAX`` unfinished
uploads and ``UPLOAD_UNFINISHED_MAX_BYTES`` bytes per ticket, counted in the database under
the ticket's row (parallel creations cannot overshoot); a partial is joined at most once
per final; resolving or deleting the ticket removes what it holds, at the commit.
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import urllib.parse

import pytest
import webtest
from s3server import on_both_storages
from sqlalchemy import func, select

from collector.archives.models import Archive, TusUpload
from collector.tickets.models import Ticket

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}
PARTIAL = {"Upload-Concat": "partial"}
ENV = {"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"}


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=3)


def _tus(token, **extra):
    return {**V, "Upload-Token": token, **extra}


def create(testapp, token, length=None, body=b"", status=201, **headers):
    if length is not None:
        headers["Upload-Length"] = str(length)
    if body:
        headers.update(CHUNK)
    return testapp.post("/api/v1/uploads/", body, headers=_tus(token, **headers),
                        status=status)


def patch(testapp, token, path, offset, body, status=204, **headers):
    return testapp.patch(path, body, headers=_tus(token, **CHUNK, **headers,
                                                  **{"Upload-Offset": str(offset)}),
                         status=status)


def _path(url):
    return "/" + url.split("/", 3)[3]


def _count(dbsession, model, **where):
    dbsession.expire_all()
    query = select(func.count()).select_from(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return dbsession.scalar(query)


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


def _upload_files(data_dir):
    return sorted(p.name for p in (data_dir / "uploads").iterdir())


# --- how many ------------------------------------------------------------------------------

@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_the_issue_a_ticket_with_one_attempt_holds_at_most_16_unfinished_uploads(
        testapp, factory, dbsession, data_dir):
    """The review's case: a ticket with 1 attempt stored 43 partial uploads. The 17th
    (default bound) is refused with a JSON 409 naming the bound, finished or unfinished,
    and nothing is stored for it; the attempt stays untouched."""
    ticket = factory.ticket(factory.platform("vm6"), 78, attempts=1)
    for index in range(16):
        if index % 2:
            create(testapp, ticket.token, 4096, body=os.urandom(4096), **PARTIAL)
        else:
            create(testapp, ticket.token, 4096, **PARTIAL)
    files = _upload_files(data_dir)
    for extra in ({**PARTIAL}, {**PARTIAL, "Upload-Defer-Length": "1"}, {}):
        length = None if "Upload-Defer-Length" in extra else 4096
        res = create(testapp, ticket.token, length, status=409, **extra)
        assert res.json["detail"].startswith("this ticket already holds 16 unfinished "
                                             "uploads, the most allowed (16)")
        assert res.headers["Tus-Resumable"] == "1.0.0"
    # with a body: refused before a byte of it is stored
    create(testapp, ticket.token, 4096, body=os.urandom(4096), status=409, **PARTIAL)
    assert _count(dbsession, TusUpload) == 16 and _upload_files(data_dir) == files
    assert _attempts(dbsession, ticket) == 1


@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_the_count_counts_plain_and_partial_uploads_until_they_end(testapp, app, ticket,
                                                                    dbsession, data_dir):
    """Plain uploads count until they are archives, partial ones until they are joined;
    terminating or finishing one makes room again."""
    app.registry.settings["upload.unfinished_max"] = 3
    token = ticket.token
    plain = _path(create(testapp, token, 6).headers["Location"])
    first = create(testapp, token, 3, body=b"abc", **PARTIAL).headers["Location"]
    second = _path(create(testapp, token, 3, **PARTIAL).headers["Location"])
    create(testapp, token, 3, status=409, **PARTIAL)
    create(testapp, token, 3, status=409)
    assert _attempts(dbsession, ticket) == 2  # the refused plain upload spent nothing

    testapp.delete(second, headers=_tus(token), status=204)  # termination frees one
    second = create(testapp, token, 3, body=b"def", **PARTIAL).headers["Location"]
    create(testapp, token, 3, status=409, **PARTIAL)
    patch(testapp, token, plain, 0, b"123456")  # an archive now
    third = _path(create(testapp, token, 3, **PARTIAL).headers["Location"])
    create(testapp, token, 3, status=409, **PARTIAL)
    testapp.delete(third, headers=_tus(token), status=204)
    final = create(testapp, token, **{"Upload-Concat": f"final;{first} {second}"})
    assert final.json["sha256"] == hashlib.sha256(b"abcdef").hexdigest()
    # joined: the two partial uploads no longer count
    for _ in range(3):
        create(testapp, token, 3, **PARTIAL)
    create(testapp, token, 3, status=409, **PARTIAL)


# --- how many bytes ------------------------------------------------------------------------

@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_declared_bytes_are_bounded_per_ticket(testapp, app, ticket, dbsession, data_dir):
    """Upload-Length of every unfinished upload of the ticket, partial or plain, counts
    against UPLOAD_UNFINISHED_MAX_BYTES (default: UPLOAD_MAX_SIZE); beyond it 413 with a
    JSON detail, before anything is stored."""
    assert app.registry.settings["upload.unfinished_max_bytes"] == 64 * 1024 * 1024
    app.registry.settings["upload.unfinished_max_bytes"] = 100_000
    token = ticket.token
    create(testapp, token, 60_000, **PARTIAL)
    res = create(testapp, token, 40_001, status=413, **PARTIAL)
    assert res.json["detail"].startswith("this ticket's unfinished uploads would hold "
                                         "100001 bytes, more than the 100000 allowed")
    create(testapp, token, 40_001, status=413)
    create(testapp, token, 40_001, body=b"x" * 1000, status=413, **PARTIAL)
    assert _count(dbsession, TusUpload) == 1 and len(_upload_files(data_dir)) == 1
    assert _attempts(dbsession, ticket) == 3
    create(testapp, token, 40_000)  # exactly up to the bound
    assert _count(dbsession, TusUpload) == 2


@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_deferred_lengths_are_bounded_by_the_bytes_written(testapp, app, ticket, dbsession,
                                                           data_dir):
    """An upload whose length is deferred counts with the bytes it has received: a chunk
    that would take the ticket past the bound is refused before it is written (the
    offset and the partial file stay), and so is a late Upload-Length past it."""
    app.registry.settings["upload.unfinished_max_bytes"] = 10_000
    token = ticket.token
    create(testapp, token, 4_000, **PARTIAL)
    deferred = _path(create(testapp, token, **{"Upload-Defer-Length": "1"}).headers[
        "Location"])
    other = _path(create(testapp, token, **{**PARTIAL, "Upload-Defer-Length": "1"})
                  .headers["Location"])
    patch(testapp, token, deferred, 0, b"a" * 3_000)
    patch(testapp, token, other, 0, b"b" * 2_000)
    row = dbsession.get(TusUpload, deferred.rsplit("/", 1)[1])
    file = data_dir / "uploads" / row.storage_key
    # 4,000 + 3,000 + 2,000 held: 1,001 more bytes are one too many
    res = patch(testapp, token, deferred, 3_000, b"a" * 1_001, status=413)
    assert "more than the 10000 allowed" in res.json["detail"]
    assert file.stat().st_size == 3_000
    head = testapp.head(deferred, headers=_tus(token))
    assert head.headers["Upload-Offset"] == "3000"
    assert head.headers["Upload-Defer-Length"] == "1"
    # declaring a length past the bound is refused too, even with a small chunk
    patch(testapp, token, deferred, 3_000, b"a", status=413, **{"Upload-Length": "5000"})
    assert testapp.head(deferred, headers=_tus(token)).headers["Upload-Defer-Length"] == "1"
    # within the bound it goes on, and finishes
    patch(testapp, token, deferred, 3_000, b"a" * 999)
    done = patch(testapp, token, deferred, 3_999, b"a",
                 **{"Upload-Length": "4000"})  # 4,000 + 2,000 + 4,000: the bound itself
    assert done.body == b""
    assert done.headers["Upload-Receipt-Sha256"] == hashlib.sha256(b"a" * 4_000).hexdigest()


# --- parallel creations ----------------------------------------------------------------------

def _create_over_http(base, token, length, concat):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    headers = _tus(token, **{"Upload-Length": str(length)})
    if concat:
        headers["Upload-Concat"] = "partial"
    try:
        conn.request("POST", "/api/v1/uploads/", body=b"", headers=headers)
        res = conn.getresponse()
        data = res.read()
        return res.status, json.loads(data) if data else None
    finally:
        conn.close()


@pytest.mark.parametrize("threads", [8, 32])
@pytest.mark.parametrize("bound", ["count", "bytes"])
def test_parallel_creations_never_overshoot(live_server, app, factory, dbsession, data_dir,
                                            threads, bound):
    """N creations at once against a real server: exactly the bound succeeds, partial and
    plain alike, the rest get 409 (count) or 413 (bytes); rows and files agree."""
    settings = app.registry.settings
    if bound == "count":
        settings["upload.unfinished_max"], expected = 5, 409
    else:
        settings["upload.unfinished_max_bytes"], expected = 5 * 1000, 413
    ticket = factory.ticket(factory.platform("vm6"), 90, attempts=1000)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(
            lambda i: _create_over_http(live_server, ticket.token, 1000, concat=i % 3 != 0),
            range(threads)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] * 5 + [expected] * (threads - 5), results
    assert _count(dbsession, TusUpload, ticket_id=ticket.id) == 5
    assert len(_upload_files(data_dir)) == 5
    plain = sum(1 for row in dbsession.scalars(select(TusUpload)) if row.concat is None)
    assert _attempts(dbsession, ticket) == 1000 - plain
    for status, body in results:
        if status == expected:
            assert body["detail"].startswith("this ticket")


# --- joining -------------------------------------------------------------------------------

def _partials(testapp, token, pieces):
    return [create(testapp, token, len(p), body=p, **PARTIAL).headers["Location"]
            for p in pieces]


@pytest.mark.parametrize("form", [
    "same URL twice", "absolute and relative", "trailing slash", "another host",
    "three times", "not adjacent"])
def test_a_partial_is_joined_at_most_once(testapp, ticket, dbsession, data_dir, form):
    """The same partial listed twice, in any URL form, is a 400 with a JSON detail: no
    archive, no attempt spent, the partial uploads intact and still joinable."""
    pieces = [os.urandom(3000), os.urandom(5)]
    a, b = _partials(testapp, ticket.token, pieces)
    listed = {
        "same URL twice": [a, a],
        "absolute and relative": [a, _path(a)],
        "trailing slash": [_path(a), _path(a) + "/"],
        "another host": [a, a.replace("http://localhost", "https://logs.example.com:8443")],
        "three times": [b, b, b],
        "not adjacent": [a, b, _path(a)],
    }[form]
    res = create(testapp, ticket.token, status=400,
                 **{"Upload-Concat": "final;" + " ".join(listed)})
    assert "listed more than once" in res.json["detail"]
    assert _count(dbsession, Archive) == 0 and _attempts(dbsession, ticket) == 3
    assert _count(dbsession, TusUpload) == 2 and len(_upload_files(data_dir)) == 2
    done = create(testapp, ticket.token, **{"Upload-Concat": f"final;{b} {_path(a)}"})
    assert done.json["sha256"] == hashlib.sha256(pieces[1] + pieces[0]).hexdigest()


# --- non-ASCII digits ----------------------------------------------------------------------

NOT_ASCII_NUMBERS = ["²", "³", "¹", "1²", "¹0", "٣", "１２", "𝟗", "३", "٣٠٠٠", "+5", "-1",
                     "0x10", "1e3", "1_000", "", " "]


def _on_the_wire(value):
    """A header value as the app sees it: WSGI decodes header bytes as latin-1, so "²"
    (byte 0xB2) arrives as itself; characters outside latin-1 travel as UTF-8 bytes."""
    try:
        value.encode("latin-1")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8").decode("latin-1")


@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_lengths_and_offsets_of_other_digits_are_400(testapp, ticket, value):
    """Upload-Length on creation, Upload-Offset and a late Upload-Length on PATCH: only
    ASCII digits are numbers; anything else is a JSON 400 (never a 500: ``"²".isdigit()``
    is true and ``int("²")`` raises)."""
    token = ticket.token
    wire = _on_the_wire(value)
    res = testapp.post("/api/v1/uploads/", b"", headers=_tus(token, **{"Upload-Length": wire}),
                       status=400)
    assert "Upload-Length" in res.json["detail"] and res.headers["Tus-Resumable"]
    res = create(testapp, token, body=b"", **{"Upload-Defer-Length": "1"})
    path = _path(res.headers["Location"])
    res = testapp.patch(path, b"abc", headers=_tus(token, **CHUNK, **{"Upload-Offset": wire}),
                        status=400)
    assert "Upload-Offset" in res.json["detail"]
    res = testapp.patch(path, b"abc", headers=_tus(token, **CHUNK, **{
        "Upload-Offset": "0", "Upload-Length": wire}), status=400)
    assert "Upload-Length" in res.json["detail"]
    assert testapp.head(path, headers=_tus(token)).headers["Upload-Offset"] == "0"


# --- the ticket ends -----------------------------------------------------------------------

def _client(app, headers):
    return webtest.TestApp(app, extra_environ={**ENV, "HTTP_AUTHORIZATION":
                                               headers["Authorization"]})


def _resolve_by_api_patch(app, staff, ticket):
    _client(app, staff.headers).patch_json(f"/api/v1/tickets/{ticket.number}/",
                                           {"resolved": True}, status=200)


def _resolve_by_api_put(app, staff, ticket):
    browser = _client(app, staff.headers)
    body = browser.get(f"/api/v1/tickets/{ticket.number}/").json
    body = {key: body[key] for key in ("number", "platform", "note")}
    browser.put_json(f"/api/v1/tickets/{ticket.number}/", {**body, "resolved": True},
                     status=200)


def _resolve_by_page(app, staff, ticket):
    browser = _client(app, staff.headers)
    form = browser.get(f"/platforms/vm6/tickets/{ticket.number}/").forms["resolve-form"]
    form["resolved"] = True
    form.submit(status=303)


def _delete_by_api(app, staff, ticket):
    _client(app, staff.headers).delete(f"/api/v1/tickets/{ticket.number}/", status=204)


def _delete_by_page(app, staff, ticket):
    browser = _client(app, staff.headers)
    page = browser.get(f"/platforms/vm6/tickets/{ticket.number}/")
    page.forms["delete-ticket-form"].submit(status=303)


ENDINGS = {"resolve (API PATCH)": _resolve_by_api_patch, "resolve (API PUT)":
           _resolve_by_api_put, "resolve (page)": _resolve_by_page,
           "delete (API)": _delete_by_api, "delete (page)": _delete_by_page}


def _holdings(testapp, token):
    """A plain upload half sent, a deferred one, a finished and an unfinished partial
    upload, and a finished plain upload (an archive: it stays)."""
    half = _path(create(testapp, token, 8).headers["Location"])
    patch(testapp, token, half, 0, b"half")
    deferred = _path(create(testapp, token, **{"Upload-Defer-Length": "1"}).headers[
        "Location"])
    patch(testapp, token, deferred, 0, b"so far")
    create(testapp, token, 5, body=b"whole", **PARTIAL)
    create(testapp, token, 9, body=b"part", **PARTIAL)
    receipt = create(testapp, token, 4, body=b"done").json
    return [half, deferred], receipt


@on_both_storages
@pytest.mark.parametrize("ending", list(ENDINGS))
def test_resolving_or_deleting_a_ticket_removes_its_unfinished_uploads(
        app, testapp, factory, staff, dbsession, data_dir, stored, ending):
    """Every route that resolves or deletes a ticket: its unfinished uploads' rows go in
    that transaction, their files (or S3 segments) right after the commit; a resolved
    ticket gets the attempts of its unfinished plain uploads back; archives stay (or go
    with a deleted ticket, as before)."""
    ticket = factory.ticket(factory.platform("vm6"), 91, attempts=5)
    plain, receipt = _holdings(testapp, ticket.token)
    store = app.registry["upload_stores"].new
    keys = [row.storage_key for row in dbsession.scalars(select(TusUpload).where(
        TusUpload.finished_at.is_(None) | (TusUpload.concat == "partial")))]
    assert len(keys) == 4
    if store.label == "upload segments":
        assert set(store.keys()) == set(keys)
    else:
        assert set(_upload_files(data_dir)) == set(keys)
    assert _attempts(dbsession, ticket) == 2

    ENDINGS[ending](app, staff, ticket)

    held = select(func.count()).select_from(TusUpload).where(
        TusUpload.finished_at.is_(None) | (TusUpload.concat == "partial"))
    dbsession.expire_all()
    assert dbsession.scalar(held) == 0
    assert _upload_files(data_dir) == []
    assert list(store.keys()) == []
    if ending.startswith("resolve"):
        assert _attempts(dbsession, ticket) == 4  # the two plain uploads' attempts
        assert stored.read(dbsession.get(Archive, receipt["id"]).storage_key) == b"done"
        for path in plain:
            testapp.head(path, headers=_tus(ticket.token), status=404)
    else:
        assert _count(dbsession, Ticket) == 0 and _count(dbsession, TusUpload) == 0
        assert stored.keys() == []


@pytest.mark.parametrize("ending", ["resolve (API PATCH)", "delete (API)"])
def test_an_aborted_resolution_or_deletion_removes_nothing(
        app, testapp, factory, staff, dbsession, data_dir, monkeypatch, ending):
    """The uploads are removed in the transaction and their files after its commit: if
    the transaction aborts after the removal, rows, files and attempts are all still
    there, and the uploads can be finished."""
    from collector.tickets import services

    ticket = factory.ticket(factory.platform("vm6"), 92, attempts=5)
    plain, _ = _holdings(testapp, ticket.token)
    files = _upload_files(data_dir)
    rows = _count(dbsession, TusUpload)
    real = services.record

    def failing(session, action, **kwargs):
        real(session, action, **kwargs)
        if action in ("ticket.resolve", "ticket.delete"):
            raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "record", failing)
    browser = _client(app, staff.headers)
    if ending.startswith("resolve"):
        browser.patch_json(f"/api/v1/tickets/{ticket.number}/", {"resolved": True},
                           status=500)
    else:
        browser.delete(f"/api/v1/tickets/{ticket.number}/", status=500)
    monkeypatch.undo()
    assert _upload_files(data_dir) == files and _count(dbsession, TusUpload) == rows
    assert _attempts(dbsession, ticket) == 2
    patch(testapp, ticket.token, plain[0], 4, b"rest")


@pytest.mark.commits  # a second request runs in a thread
# locking differs: flock and SQLite's single writer, FOR UPDATE [NOWAIT] on PostgreSQL
@pytest.mark.sqlite
def test_a_chunk_whose_upload_is_removed_meanwhile_never_becomes_an_archive(
        testapp, ticket, engine, dbsession, data_dir, monkeypatch):
    """The ticket is resolved (its unfinished uploads removed) while a chunk is being
    written. SQLite: the removal commits first, the chunk's offset UPDATE finds no row:
    a JSON 410, no archive, no file left. PostgreSQL: the chunk holds its row, so the
    removal waits for it and then removes the upload the chunk left (the last chunk:
    an archive, which stays)."""
    import threading

    from sqlalchemy import delete
    from sqlalchemy.orm import Session

    from collector.archives.uploads import tus

    path = _path(create(testapp, ticket.token, 6).headers["Location"])
    row = dbsession.get(TusUpload, path.rsplit("/", 1)[1])
    key = row.storage_key
    removal = {}

    def remove():
        # What resolving does: the row in its transaction, the file after the commit.
        with Session(engine) as other, other.begin():
            removal["rows"] = other.execute(delete(TusUpload).where(
                TusUpload.id == row.id, tus.HOLDING)).rowcount
        (data_dir / "uploads" / key).unlink(missing_ok=True)

    real = tus.CheckedBody.check

    def check_then_remove(body):
        real(body)
        removal["thread"] = threading.Thread(target=remove)
        removal["thread"].start()
        if engine.dialect.name == "sqlite":
            removal["thread"].join(30)  # committed before this chunk's offset UPDATE

    monkeypatch.setattr(tus.CheckedBody, "check", check_then_remove)
    if engine.dialect.name == "sqlite":
        res = patch(testapp, ticket.token, path, 0, b"abc", status=410)
        assert "removed while the chunk was written" in res.json["detail"]
        assert removal["rows"] == 1
    else:
        patch(testapp, ticket.token, path, 0, b"abcdef")
        removal["thread"].join(30)
        assert removal["rows"] == 0  # it was an archive by then: nothing to remove
    assert not removal["thread"].is_alive()
    monkeypatch.undo()
    assert _upload_files(data_dir) == []
    assert _count(dbsession, Archive) == (0 if engine.dialect.name == "sqlite" else 1)
