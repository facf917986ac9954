"""tus 1.0.0 at /api/v1/uploads/: core, extensions, token rules, attempts, hashes, purge."""

import base64
import datetime as dt
import hashlib
import os

import pytest
from s3server import on_both_storages
from sqlalchemy import select, update

from collector.archives.models import Archive, TusUpload
from collector.archives.uploads import tus
from collector.cli import main as cli_main
from collector.tickets.models import Ticket

V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}


def b64(text):
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=3)


class Client:
    def __init__(self, testapp, token):
        self.app, self.token = testapp, token

    def headers(self, **extra):
        return {**V, "Upload-Token": self.token, **extra}

    def create(self, length=None, status=201, body=b"", name="logs.tgz", **headers):
        if length is not None:
            headers["Upload-Length"] = str(length)
        headers.setdefault("Upload-Metadata", f"filename {b64(name)},filetype {b64('x/y')}")
        if body:
            headers.update(CHUNK)
        res = self.app.post("/api/v1/uploads/", body, headers=self.headers(**headers),
                            status=status)
        return res

    def patch(self, url, offset, body, status=204, **headers):
        return self.app.patch(url, body, headers=self.headers(
            **CHUNK, **{"Upload-Offset": str(offset)}, **headers), status=status)

    def head(self, url, status=200):
        return self.app.head(url, headers=self.headers(), status=status)

    def finish(self, url, offset, body, **headers):
        """The PATCH that completes the upload: 204 with no body and the receipt in
        headers (tus 1.0.0), then the whole receipt from GET on the upload's URL."""
        res = self.patch(url, offset, body, status=204, **headers)
        return Finished(res, self.receipt(url))

    def receipt(self, url, status=200):
        return self.app.get(url, headers={"Upload-Token": self.token}, status=status)


class Finished:
    """A completing PATCH's answer, with the receipt its GET gave."""

    def __init__(self, res, receipt):
        assert res.body == b""
        assert res.headers["Upload-Archive-Id"] == str(receipt.json["id"])
        assert res.headers["Upload-Receipt-Sha256"] == receipt.json["sha256"]
        assert res.headers["Upload-Receipt-Size"] == str(receipt.json["size"])
        self.headers, self.json = res.headers, receipt.json


@pytest.fixture
def client(testapp, ticket):
    return Client(testapp, ticket.token)


def _attempts(dbsession, ticket):
    dbsession.expire_all()
    return dbsession.get(Ticket, ticket.id).attempts


def _path(url):
    return "/" + url.split("/", 3)[3]


def test_options_announces_the_server(testapp, app):
    res = testapp.options("/api/v1/uploads/", status=204)
    assert res.headers["Tus-Version"] == "1.0.0"
    assert res.headers["Tus-Resumable"] == "1.0.0"
    assert res.headers["Tus-Max-Size"] == str(64 * 1024 * 1024)
    assert set(res.headers["Tus-Extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination",
        "checksum", "expiration", "concatenation"}
    assert res.headers["Tus-Checksum-Algorithm"] == "sha1,md5,sha256"


@on_both_storages
def test_whole_upload_in_chunks_becomes_an_archive(client, dbsession, ticket, data_dir,
                                                   stored):
    body = os.urandom(3 * 1024 * 1024 + 17)
    created = client.create(len(body))
    url = created.headers["Location"]
    assert url.startswith("http://localhost/api/v1/uploads/")
    assert created.headers["Tus-Resumable"] == "1.0.0"
    assert "GMT" in created.headers["Upload-Expires"]
    assert len(url.rsplit("/", 1)[1]) >= 32  # ≥ 192 bits
    assert _attempts(dbsession, ticket) == 2  # reserved at creation
    path = _path(url)
    step = 1024 * 1024
    for offset in range(0, len(body) - step, step):
        res = client.patch(path, offset, body[offset:offset + step])
        assert res.headers["Upload-Offset"] == str(offset + step)
        assert "Upload-Archive-Id" not in res.headers
    head = client.head(path)
    assert head.headers["Upload-Offset"] == str(3 * step)
    assert head.headers["Upload-Length"] == str(len(body))
    assert head.headers["Cache-Control"] == "no-store"
    assert head.headers["Upload-Metadata"].startswith("filename ")
    last = client.finish(path, 3 * step, body[3 * step:])
    assert last.headers["Upload-Offset"] == str(len(body))
    receipt = last.json
    assert last.headers["Upload-Archive-Id"] == str(receipt["id"])
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["md5"] == hashlib.md5(body).hexdigest()
    assert (receipt["ticket"], receipt["name"], receipt["size"]) == (77, "logs.tgz", len(body))
    archive = dbsession.get(Archive, receipt["id"])
    assert stored.keys() == [archive.storage_key]
    assert stored.read(archive.storage_key) == body
    # Local: moved, not copied; S3: uploaded at the last chunk, the local file removed.
    assert list((data_dir / "uploads").iterdir()) == [] and stored.leftovers() == []
    assert _attempts(dbsession, ticket) == 2  # once per upload, not per chunk
    assert client.head(path).headers["Upload-Archive-Id"] == str(receipt["id"])


@on_both_storages
def test_restart_in_the_middle_still_hashes_right(client, dbsession):
    body = os.urandom(2 * 1024 * 1024 + 5)
    path = _path(client.create(len(body)).headers["Location"])
    client.patch(path, 0, body[:1000])
    client.patch(path, 1000, body[1000:1024 * 1024])
    tus.HASHES.clear()  # what a restart of the process loses
    receipt = client.finish(path, 1024 * 1024, body[1024 * 1024:]).json
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert receipt["md5"] == hashlib.md5(body).hexdigest()


@pytest.mark.parametrize("storage_kind", ["s3"])
# locking differs: flock and SQLite's single writer, FOR UPDATE [NOWAIT] on PostgreSQL
@pytest.mark.sqlite
def test_s3_chunks_become_segments_and_the_archive_is_copied_from_them(
        client, dbsession, app, data_dir, stored, s3_server, monkeypatch):
    """On S3 an upload's bytes are segment objects (no local file): chunks smaller than a
    segment and chunks across segment boundaries, a lost hash cache (another instance
    wrote the last chunk) and bytes past the committed offset (a failed request's) all end
    in the right archive, assembled from the segments; the segments go after the commit."""
    segments = app.registry["upload_stores"].new
    seg = 8 * 1024 * 1024
    rehashed = []
    of_chunks = tus.Hashes.of_chunks

    def counting(chunks):
        rehashed.append(1)
        return of_chunks(chunks)

    monkeypatch.setattr(tus.Hashes, "of_chunks", counting)
    body = os.urandom(2 * seg + 3 * 1024 * 1024 + 11)
    path = _path(client.create(len(body)).headers["Location"])
    row = dbsession.scalars(select(TusUpload)).one()
    assert row.segment_size == seg
    local = list((data_dir / "uploads").iterdir())
    if dbsession.get_bind().dialect.name == "postgresql":
        assert local == []  # the row lock decides; nothing is kept on this instance
    else:
        assert local == [data_dir / "uploads" / row.storage_key]
        assert local[0].stat().st_size == 0  # only SQLite's lock (one machine)
    cuts = [0, 1000, 3 * 1024 * 1024, seg - 1, seg + 5, 2 * seg + 1024 * 1024, len(body)]
    for start, end in zip(cuts, cuts[1:-1]):
        client.patch(path, start, body[start:end])
        if start == 3 * 1024 * 1024:
            tus.HASHES.clear()  # the next chunk hashes the stored segments again
    stored_now = s3_server.objects(segments.name(row.storage_key, 0).rsplit("/", 1)[0])
    assert sorted(size for size in stored_now.values()) == [1024 * 1024, seg, seg]
    # A failed request's bytes past the committed offset, in the tail segment.
    tail = segments.name(row.storage_key, 2)
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=tail,
                                  Body=body[2 * seg:2 * seg + 1024 * 1024] + b"garbage")
    tus.HASHES.clear()
    receipt = client.finish(path, cuts[-2], body[cuts[-2]:]).json
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    # Over 4 MiB: the md5 comes later, from the background job (test_md5_background.py).
    assert receipt["md5"] is None
    # Started from nothing at offset 0, read back after the cache was lost (twice);
    # every other chunk used the cache (saved once its offset was committed).
    assert len(rehashed) == 3
    archive = dbsession.get(Archive, receipt["id"])
    assert stored.read(archive.storage_key) == body
    assert segments.keys() == [] and stored.leftovers() == []
    assert list((data_dir / "uploads").iterdir()) == []


def test_bytes_past_the_committed_offset_are_cut_off(client, dbsession, data_dir):
    """A crash after the fsync but before the commit leaves extra bytes in the file."""
    body = os.urandom(50000)
    path = _path(client.create(len(body)).headers["Location"])
    client.patch(path, 0, body[:20000])
    [partial] = (data_dir / "uploads").iterdir()
    with open(partial, "ab") as out:
        out.write(b"garbage of a request whose commit failed")
    tus.HASHES.clear()
    assert client.head(path).headers["Upload-Offset"] == "20000"
    receipt = client.finish(path, 20000, body[20000:]).json
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()


@on_both_storages
def test_creation_with_upload(client, dbsession, ticket):
    body = b"first part " * 100
    res = client.create(len(body) * 2, body=body)
    assert res.headers["Upload-Offset"] == str(len(body))
    path = _path(res.headers["Location"])
    done = client.finish(path, len(body), body)
    assert done.json["sha256"] == hashlib.sha256(body * 2).hexdigest()
    # and all at once: the 201 carries the receipt
    whole = client.create(5, body=b"12345")
    assert whole.json["sha256"] == hashlib.sha256(b"12345").hexdigest()
    assert whole.headers["Upload-Archive-Id"] == str(whole.json["id"])
    assert _attempts(dbsession, ticket) == 1


@on_both_storages
def test_defer_length(client):
    res = client.create(**{"Upload-Defer-Length": "1"})
    path = _path(res.headers["Location"])
    assert client.head(path).headers["Upload-Defer-Length"] == "1"
    client.patch(path, 0, b"abc")
    done = client.finish(path, 3, b"def", **{"Upload-Length": "6"})
    assert done.json["sha256"] == hashlib.sha256(b"abcdef").hexdigest()
    client.create(status=400)  # neither length nor defer


@on_both_storages
def test_checksum(client):
    path = _path(client.create(10).headers["Location"])
    good = base64.b64encode(hashlib.sha1(b"12345").digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    res = client.patch(path, 0, b"12345", status=460,
                       **{"Upload-Checksum": f"sha256 {bad}"})
    assert "does not match" in res.json["detail"]
    assert client.head(path).headers["Upload-Offset"] == "0"  # discarded
    client.patch(path, 0, b"12345", status=400, **{"Upload-Checksum": f"crc32 {good}"})
    client.patch(path, 0, b"12345", **{"Upload-Checksum": f"sha1 {good}"})
    md5 = base64.b64encode(hashlib.md5(b"67890").digest()).decode()
    done = client.finish(path, 5, b"67890", **{"Upload-Checksum": f"md5 {md5}"})
    assert done.json["sha256"] == hashlib.sha256(b"1234567890").hexdigest()


def test_protocol_errors(client, testapp, app):
    path = _path(client.create(10).headers["Location"])
    res = client.patch(path, 3, b"abc", status=409)
    assert res.headers["Tus-Resumable"] == "1.0.0"
    assert client.head(path).headers["Upload-Offset"] == "0"  # nothing was written
    client.app.patch(path, b"abc", headers={**client.headers(), "Upload-Offset": "0",
                                            "Content-Type": "text/plain"}, status=415)
    missing = testapp.patch(path, b"abc", headers={**CHUNK, "Upload-Offset": "0",
                                                   "Upload-Token": client.token}, status=412)
    assert missing.headers["Tus-Version"] == "1.0.0"
    assert missing.json["detail"]
    testapp.post("/api/v1/uploads/", headers={"Upload-Length": "3",
                                              "Upload-Token": client.token}, status=412)
    client.create(64 * 1024 * 1024 + 1, status=413)
    client.patch(path, 0, b"x" * 11, status=400)  # past Upload-Length
    client.create(3, status=400, **{"Upload-Metadata": "filename not-base64!"})


def test_token_answers_and_other_tickets(client, testapp, factory, dbsession, ticket):
    path = _path(client.create(10).headers["Location"])
    testapp.head(path, headers=V, status=401)
    testapp.head(path, headers={**V, "Upload-Token": "nope"}, status=403)
    other = factory.ticket(factory.platform("other"), 78)
    testapp.head(path, headers={**V, "Upload-Token": other.token}, status=404)
    res = Client(testapp, other.token).patch(path, 0, b"abc", status=404)
    assert res.json["detail"] == "Not found."
    testapp.head("/api/v1/uploads/" + "x" * 32, headers=client.headers(), status=404)
    dbsession.execute(update(Ticket).where(Ticket.id == ticket.id).values(resolved=True))
    dbsession.commit()
    res = client.patch(path, 0, b"abc", status=423)
    assert "resolved" in res.json["detail"]
    client.create(10, status=423)


def test_last_attempt_upload_continues(factory, testapp, dbsession):
    ticket = factory.ticket(factory.platform("vm6"), 79, attempts=1)
    client = Client(testapp, ticket.token)
    path = _path(client.create(6).headers["Location"])
    assert _attempts(dbsession, ticket) == 0
    client.create(6, status=423)  # no attempt left for another upload
    client.patch(path, 0, b"abc")  # but this one holds its attempt
    client.finish(path, 3, b"def")


@on_both_storages
def test_termination_gives_the_attempt_back(client, dbsession, ticket, data_dir, testapp):
    path = _path(client.create(10).headers["Location"])
    client.patch(path, 0, b"abc")
    assert _attempts(dbsession, ticket) == 2
    testapp.delete(path, headers=client.headers(), status=204)
    assert _attempts(dbsession, ticket) == 3
    assert list((data_dir / "uploads").iterdir()) == []
    client.patch(path, 3, b"def", status=404)
    client.head(path, status=404)
    testapp.delete(path, headers=client.headers(), status=404)
    assert _attempts(dbsession, ticket) == 3


def test_method_override(client, testapp):
    path = _path(client.create(3).headers["Location"])
    res = testapp.post(path, b"abc", headers={**client.headers(), **CHUNK,
                                              "Upload-Offset": "0",
                                              "X-HTTP-Method-Override": "PATCH"}, status=204)
    assert res.headers["Upload-Receipt-Size"] == "3"


def test_location_behind_a_proxy(client, testapp):
    res = testapp.post("/api/v1/uploads/", headers={**client.headers(), "Upload-Length": "3"},
                       extra_environ={"wsgi.url_scheme": "https",
                                      "HTTP_HOST": "logs.example.com"}, status=201)
    assert res.headers["Location"].startswith("https://logs.example.com/api/v1/uploads/")


def _concat_parts(client, pieces):
    urls = []
    for piece in pieces:
        res = client.create(len(piece), body=piece, **{"Upload-Concat": "partial"})
        assert client.head(_path(res.headers["Location"])).headers["Upload-Concat"] == \
            "partial"
        urls.append(res.headers["Location"])
    return urls


@on_both_storages
def test_concatenation_in_order_counts_one_attempt(client, dbsession, ticket, data_dir,
                                                   stored):
    pieces = [os.urandom(3000), os.urandom(1), os.urandom(70000)]
    urls = _concat_parts(client, pieces)
    assert _attempts(dbsession, ticket) == 3  # partial uploads reserve nothing
    # relative and absolute URLs, not in creation order
    order = [urls[2], _path(urls[0]), urls[1]]
    final = client.create(status=201, **{"Upload-Concat": "final;" + " ".join(order)})
    expected = pieces[2] + pieces[0] + pieces[1]
    assert final.json["sha256"] == hashlib.sha256(expected).hexdigest()
    assert final.json["md5"] == hashlib.md5(expected).hexdigest()
    assert _attempts(dbsession, ticket) == 2  # one for the whole concatenation
    head = client.head(_path(final.headers["Location"]))
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"] == str(len(expected))
    # the partial uploads as the creation named them (tus 1.0.0)
    assert head.headers["Upload-Concat"] == "final;" + " ".join(order)
    client.patch(_path(final.headers["Location"]), len(expected), b"x", status=403)
    archive = dbsession.get(Archive, final.json["id"])
    assert stored.read(archive.storage_key) == expected
    assert list((data_dir / "uploads").iterdir()) == [] and stored.leftovers() == []
    # used partial uploads are gone
    client.create(status=400, **{"Upload-Concat": "final;" + urls[0]})


def test_concatenation_needs_finished_parts(client):
    res = client.create(10, **{"Upload-Concat": "partial"})
    client.create(status=400, **{"Upload-Concat": "final;" + res.headers["Location"]})


@pytest.mark.commits  # the command line opens the database itself
def test_expired_upload_answers_410_and_purge_removes_it(client, dbsession, ticket, data_dir,
                                                         settings, tmp_path):
    path = _path(client.create(10).headers["Location"])
    client.patch(path, 0, b"abc")
    keep = _path(client.create(10).headers["Location"])
    assert _attempts(dbsession, ticket) == 1
    upload_id = path.rsplit("/", 1)[1]
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    dbsession.execute(update(TusUpload).where(TusUpload.id == upload_id)
                      .values(expires_at=past))
    dbsession.commit()
    client.patch(path, 3, b"def", status=410)
    client.head(path, status=410)
    client.head(keep)
    ini = tmp_path / "purge.ini"
    ini.write_text(f"[app:main]\nuse = egg:logs-collector\ndb_url = {settings['db_url']}\n"
                   f"data_dir = {data_dir}\nsecret_key = {settings['secret_key']}\n"
                   "allowed_hosts = localhost\n")
    cli_main(["-c", str(ini), "purge"])
    dbsession.expire_all()
    assert dbsession.get(TusUpload, upload_id) is None
    assert len(list((data_dir / "uploads").iterdir())) == 1  # the other one stays
    assert _attempts(dbsession, ticket) == 2  # the expired one's attempt came back
    client.head(path, status=404)
    client.head(keep)


@pytest.mark.parametrize("storage_kind", ["s3"])
@pytest.mark.commits  # the command line opens the database itself
def test_purge_removes_expired_s3_uploads_and_orphan_segments(
        client, dbsession, ticket, data_dir, settings, tmp_path, app, s3_server, capsys):
    """An expired upload's segments go with its row (its attempt comes back); segments no
    unfinished upload owns (a crash before their removal) are orphans; the segments of an
    upload in progress stay."""
    segments = app.registry["upload_stores"].new
    expired = _path(client.create(10 * 1024 * 1024).headers["Location"])
    client.patch(expired, 0, os.urandom(9 * 1024 * 1024))
    kept = _path(client.create(10).headers["Location"])
    client.patch(kept, 0, b"abc")
    rows = {row.id: row for row in dbsession.scalars(select(TusUpload))}
    expired_key = rows[expired.rsplit("/", 1)[1]].storage_key
    kept_key = rows[kept.rsplit("/", 1)[1]].storage_key
    orphan_key = "ab" * 16
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=segments.name(orphan_key, 0),
                                  Body=b"left by a crash")
    assert set(segments.keys()) == {expired_key, kept_key, orphan_key}
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    dbsession.execute(update(TusUpload).where(TusUpload.storage_key == expired_key)
                      .values(expires_at=past))
    dbsession.commit()
    assert _attempts(dbsession, ticket) == 1
    ini = tmp_path / "purge.ini"
    ini.write_text("[app:main]\nuse = egg:logs-collector\nallowed_hosts = localhost\n" + "".join(
        f"{key} = {settings[key]}\n" for key in (
            "db_url", "data_dir", "secret_key", "storage.url", "storage.endpoint_url",
            "storage.region", "storage.quota")))
    cli_main(["-c", str(ini), "purge", "--dry-run", "--stale-hours", "0"])
    out = capsys.readouterr().out
    assert f"would remove orphan upload segments {segments.location(orphan_key)}" in out
    assert set(segments.keys()) == {expired_key, kept_key, orphan_key}
    cli_main(["-c", str(ini), "purge", "--stale-hours", "0"])
    out = capsys.readouterr().out
    assert f"removed orphan upload segments {segments.location(orphan_key)}" in out
    assert set(segments.keys()) == {kept_key}
    assert _attempts(dbsession, ticket) == 2
    client.head(expired, status=404)
    assert client.finish(kept, 3, b"0123456").json["size"] == 10


@pytest.mark.commits  # the command line opens the database itself
def test_purge_removes_uploads_still_empty_after_stale_hours(client, dbsession, ticket,
                                                             data_dir, settings, tmp_path,
                                                             capsys):
    """A creation whose answer was lost (the server died after its commit) leaves an empty
    upload no client can continue: purge gives its attempt back once it has been empty
    for ``--stale-hours``. One that received a byte, a partial upload and a young empty
    one stay."""
    empty = _path(client.create(10).headers["Location"])
    started = _path(client.create(10).headers["Location"])
    client.patch(started, 0, b"a")
    partial = _path(client.create(10, **{"Upload-Concat": "partial"}).headers["Location"])
    young = _path(client.create(10).headers["Location"])
    assert _attempts(dbsession, ticket) == 0
    hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=7)
    ids = [path.rsplit("/", 1)[1] for path in (empty, started, partial)]
    dbsession.execute(update(TusUpload).where(TusUpload.id.in_(ids))
                      .values(time_update=hours_ago))
    dbsession.commit()
    key = dbsession.get(TusUpload, ids[0]).storage_key
    ini = tmp_path / "purge.ini"
    ini.write_text(f"[app:main]\nuse = egg:logs-collector\ndb_url = {settings['db_url']}\n"
                   f"data_dir = {data_dir}\nsecret_key = {settings['secret_key']}\n"
                   "allowed_hosts = localhost\n")
    cli_main(["-c", str(ini), "purge", "--dry-run"])
    assert f"would remove empty upload {ids[0]} {data_dir / 'uploads' / key}" in \
        capsys.readouterr().out
    assert (data_dir / "uploads" / key).is_file()
    cli_main(["-c", str(ini), "purge"])
    assert f"removed empty upload {ids[0]}" in capsys.readouterr().out
    dbsession.expire_all()
    assert dbsession.get(TusUpload, ids[0]) is None
    assert not (data_dir / "uploads" / key).exists()
    assert _attempts(dbsession, ticket) == 1  # the empty one's attempt came back
    client.head(empty, status=404)
    for path in (started, partial, young):
        client.head(path)
    # the attempt is usable again: a new upload starts
    client.create(10)


def test_concurrent_patch_is_refused_while_locked(client, dbsession, app, data_dir):
    """The lock as a second process would meet it: flock held on the partial file."""
    import fcntl

    path = _path(client.create(6).headers["Location"])
    [partial] = (data_dir / "uploads").iterdir()
    with open(partial, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        res = client.patch(path, 0, b"abc", status=409)
        assert "another request" in res.json["detail"]
    client.patch(path, 0, b"abc")
    assert dbsession.scalars(select(TusUpload)).one().offset == 3


@pytest.mark.parametrize("storage_kind", ["s3"])
@pytest.mark.commits  # the other instance holds its lock in a transaction of its own
# locking differs: flock and SQLite's single writer, FOR UPDATE [NOWAIT] on PostgreSQL
@pytest.mark.sqlite
def test_s3_upload_locked_by_another_instance_is_409(client, dbsession, engine, data_dir):
    """On S3 another instance has no partial file to flock: on PostgreSQL the row lock
    (``FOR UPDATE NOWAIT``) refuses the second writer; on SQLite (one machine) the flock
    of the upload's empty lock file does. Nothing is written meanwhile."""
    import fcntl

    from sqlalchemy.orm import Session

    path = _path(client.create(6).headers["Location"])
    row = dbsession.scalars(select(TusUpload)).one()
    if engine.dialect.name == "postgresql":
        with Session(engine) as other, other.begin():
            other.scalars(select(TusUpload).where(TusUpload.id == row.id)
                          .with_for_update()).one()
            res = client.patch(path, 0, b"abc", status=409)
            client.app.delete(path, headers=client.headers(), status=409)
    else:
        with open(data_dir / "uploads" / row.storage_key, "rb") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            res = client.patch(path, 0, b"abc", status=409)
    assert "another request" in res.json["detail"]
    assert client.head(path).headers["Upload-Offset"] == "0"
    client.patch(path, 0, b"abc")
    assert client.finish(path, 3, b"def").json["sha256"] == \
        hashlib.sha256(b"abcdef").hexdigest()


@on_both_storages
def test_a_lost_last_answer_is_asked_again(client, dbsession, testapp, staff):
    """The answer to the last chunk never reached the client: an empty PATCH at the end
    gives the same receipt; more bytes, another offset or a deleted archive do not."""
    body = os.urandom(70_000)
    path = _path(client.create(len(body)).headers["Location"])
    receipt = client.finish(path, 0, body).json

    again = client.finish(path, len(body), b"")
    assert again.json == receipt
    assert again.headers["Upload-Archive-Id"] == str(receipt["id"])
    assert again.headers["Upload-Offset"] == str(len(body))
    client.patch(path, len(body), b"x", status=409)
    client.patch(path, 0, b"", status=409)

    testapp.delete(f"/api/v1/archives/{receipt['id']}/", headers=staff.headers, status=204)
    gone = client.patch(path, len(body), b"", status=410)
    assert "deleted" in gone.json["detail"]
    assert "deleted" in client.receipt(path, status=410).json["detail"]
    dbsession.expire_all()
    assert dbsession.get(Archive, receipt["id"]) is None


@pytest.mark.parametrize("storage_kind", ["s3"])
@pytest.mark.parametrize("failing", ["put_object", "upload_part_copy"])
@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
def test_a_store_failure_at_the_last_chunk_keeps_the_upload_resumable(
        client, dbsession, app, data_dir, stored, monkeypatch, failing):
    """The last chunk's segment cannot be stored, or the archive cannot be assembled from
    the segments: a JSON 503, the upload stays at the offset before the last chunk,
    nothing is left in the bucket but the upload's own segments, and the chunk sent
    again finishes it."""
    import botocore.exceptions

    body = os.urandom(9 * 1024 * 1024 + 3)
    path = _path(client.create(len(body)).headers["Location"])
    client.patch(path, 0, body[:5 * 1024 * 1024])

    def refused(*args, **kwargs):
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ServiceUnavailable", "Message": "down"}}, failing)

    monkeypatch.setattr(app.registry["archive_storage"].client, failing, refused)
    res = client.patch(path, 5 * 1024 * 1024, body[5 * 1024 * 1024:], status=503)
    assert "object store" in res.json["detail"]
    assert res.headers["Retry-After"] == "10"
    monkeypatch.undo()
    assert client.head(path).headers["Upload-Offset"] == str(5 * 1024 * 1024)
    assert stored.keys() == [] and stored.leftovers() == []
    assert dbsession.scalars(select(Archive)).all() == []
    receipt = client.finish(path, 5 * 1024 * 1024, body[5 * 1024 * 1024:]).json
    assert receipt["sha256"] == hashlib.sha256(body).hexdigest()
    assert stored.read(dbsession.get(Archive, receipt["id"]).storage_key) == body
    assert list((data_dir / "uploads").iterdir()) == [] and stored.leftovers() == []
    segments = app.registry["upload_stores"].new
    assert segments.keys() == []  # removed after the commit


def _open_under(root):
    """This process's descriptors on files under ``root``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used
            continue
        if target.startswith(str(root)):
            found.append(target)
    return sorted(found)


@pytest.mark.commits  # a transaction of its own commits while the request's rolls back
# locking differs: flock and SQLite's single writer, FOR UPDATE [NOWAIT] on PostgreSQL
@pytest.mark.sqlite
def test_failed_and_refused_requests_close_the_lock_descriptor(client, testapp, data_dir,
                                                               monkeypatch):
    """A PATCH or DELETE opens the partial file to lock it; whatever the answer, that
    descriptor is closed once the request has ended (a leaked one would also keep the
    lock, and every later chunk of the upload would get 409)."""
    import errno
    import fcntl

    path = _path(client.create(10).headers["Location"])
    client.patch(path, 0, b"abc")
    [partial] = (data_dir / "uploads").iterdir()
    bad = "sha256 " + base64.b64encode(hashlib.sha256(b"other").digest()).decode()

    def batch():
        client.patch(path, 5, b"xyz", status=409)  # wrong offset, found under the lock
        client.patch(path, 3, b"x" * 8, status=400)  # past Upload-Length
        client.patch(path, 3, b"def", status=460, **{"Upload-Checksum": bad})
        client.create(10, body=b"abc", status=460, **{"Upload-Checksum": bad})
        with open(partial, "rb") as held:  # another process holds the lock
            fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails if a lock leaked
            client.patch(path, 3, b"def", status=409)
            testapp.delete(path, headers=client.headers(), status=409)

    batch()
    for _ in range(5):
        batch()
    assert _open_under(data_dir) == []

    # A lock refused for another reason than "held" (here: no locks left) closes it too.
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    from collector.archives.storage import uploads as local_uploads

    monkeypatch.setattr(local_uploads.fcntl, "flock", no_locks)
    for _ in range(3):
        client.patch(path, 3, b"def", status=500)
    monkeypatch.undo()
    assert _open_under(data_dir) == []
    client.finish(path, 3, b"defghij")
