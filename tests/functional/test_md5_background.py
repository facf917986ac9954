"""The md5 of an archive over 4 MiB: null in every answer until the worker thread has
computed it after the upload's commit; what a stopped process left without one is filled
by the next start (its sweep) and by ``collector purge``."""

import base64
import hashlib
import logging
import os

import pytest
from s3server import on_both_storages
from sqlalchemy import select, update

from collector import main
from collector.archives.models import Archive
from collector.cli import main as cli

# The worker writes on a connection of its own, from its own thread: real commits; on
# SQLite too, where it waits for the one write lock.
pytestmark = [pytest.mark.commits, pytest.mark.sqlite]

BIG = 4 * 1024 * 1024 + 1  # one byte over streams.MD5_INLINE_MAX
V = {"Tus-Resumable": "1.0.0"}
CHUNK = {"Content-Type": "application/offset+octet-stream"}
WAIT = 60


@pytest.fixture
def settings(settings):
    return {**settings, "md5.worker": "true"}


@pytest.fixture
def worker(app):
    return app.registry["md5_worker"]


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 77, attempts=5)


def _md5_of_row(engine, archive_id):
    with engine.connect() as connection:
        return connection.execute(
            select(Archive.md5).where(Archive.id == archive_id)).scalar_one()


def _forget_md5(engine, archive_id):
    """What a process that died before its md5 job ran leaves behind."""
    with engine.begin() as connection:
        connection.execute(update(Archive).where(Archive.id == archive_id).values(md5=None))


@on_both_storages
def test_single_request_answers_null_then_the_worker_fills_it(testapp, ticket, worker,
                                                               staff, engine):
    body = os.urandom(BIG)
    res = testapp.post("/api/v1/archives/", body, status=201, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"})
    assert res.json["md5"] is None
    assert res.json["sha256"] == hashlib.sha256(body).hexdigest()
    assert worker.join(WAIT)
    assert _md5_of_row(engine, res.json["id"]) == hashlib.md5(body).hexdigest()
    item = testapp.get(f"/api/v1/archives/{res.json['id']}/", headers=staff.headers).json
    assert item["md5"] == hashlib.md5(body).hexdigest()


def test_a_small_archive_has_its_md5_at_once(testapp, ticket):
    body = os.urandom(BIG - 1)
    res = testapp.post("/api/v1/archives/", body, status=201, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"})
    assert res.json["md5"] == hashlib.md5(body).hexdigest()


def test_tus_receipt_has_no_md5_until_computed(testapp, ticket, worker):
    body = os.urandom(BIG + 1024 * 1024)
    name = base64.b64encode(b"big.tar.gz").decode()
    created = testapp.post("/api/v1/uploads/", headers={
        **V, "Upload-Token": ticket.token, "Upload-Length": str(len(body)),
        "Upload-Metadata": f"filename {name}"}, status=201)
    path = "/" + created.headers["Location"].split("/", 3)[3]
    half = len(body) // 2
    for offset, piece in ((0, body[:half]), (half, body[half:])):
        last = testapp.patch(path, piece, headers={**V, **CHUNK, "Upload-Token": ticket.token,
                                                   "Upload-Offset": str(offset)}, status=204)
    assert last.headers["Upload-Receipt-Sha256"] == hashlib.sha256(body).hexdigest()
    assert "Upload-Receipt-Md5" not in last.headers
    assert worker.join(WAIT)
    receipt = testapp.get(path, headers={"Upload-Token": ticket.token}).json
    assert receipt["md5"] == hashlib.md5(body).hexdigest()
    again = testapp.head(path, headers={**V, "Upload-Token": ticket.token})
    assert again.headers["Upload-Archive-Id"] == str(receipt["id"])


def _upload(testapp, ticket, body):
    return testapp.post("/api/v1/archives/", body, status=201, headers={
        "Upload-Token": ticket.token, "Content-Type": "application/octet-stream"}).json


def test_a_restart_computes_what_a_stopped_process_left(testapp, ticket, worker, engine,
                                                        settings):
    body = b"left without md5\n" * 1000
    archive = _upload(testapp, ticket, body)
    _forget_md5(engine, archive["id"])
    # A new process starts: its sweep, in the worker thread, fills the row.
    restarted = main({}, **settings)
    assert restarted.registry["md5_worker"].join(WAIT)
    assert _md5_of_row(engine, archive["id"]) == hashlib.md5(body).hexdigest()


def test_purge_fills_missing_md5s(testapp, ticket, engine, settings, tmp_path, capsys):
    body = b"purge fills me\n" * 1000
    archive = _upload(testapp, ticket, body)
    _forget_md5(engine, archive["id"])
    ini = tmp_path / "test.ini"
    ini.write_text(f"""[app:main]
use = egg:logs-collector
debug = true
secret_key = md5-test-secret-0123456789
data_dir = {settings["data_dir"]}
db_url = {settings["db_url"].replace("%", "%%")}
""")
    cli(["-c", str(ini), "purge", "--dry-run"])
    assert f"would compute the md5 of archive {archive['id']}" in capsys.readouterr().out
    assert _md5_of_row(engine, archive["id"]) is None
    cli(["-c", str(ini), "purge"])
    md5 = hashlib.md5(body).hexdigest()
    assert f"computed the md5 of archive {archive['id']}: {md5}" in capsys.readouterr().out
    assert _md5_of_row(engine, archive["id"]) == md5
    cli(["-c", str(ini), "purge"])
    assert "md5" not in capsys.readouterr().out


def test_an_archive_deleted_before_its_job_is_skipped_quietly(
        testapp, ticket, worker, engine, staff, caplog):
    archive = _upload(testapp, ticket, b"deleted soon\n" * 100)
    _forget_md5(engine, archive["id"])
    with engine.connect() as connection:
        key = connection.execute(select(Archive.storage_key)
                                 .where(Archive.id == archive["id"])).scalar_one()
    testapp.delete(f"/api/v1/archives/{archive['id']}/", headers=staff.headers, status=204)
    caplog.set_level(logging.INFO, logger="collector.archives.checksums")
    worker.submit(archive["id"], key)
    assert worker.join(WAIT)
    assert [r for r in caplog.records if r.name == "collector.archives.checksums"] == []


def test_a_row_whose_bytes_are_missing_is_a_warning(testapp, ticket, worker, engine, stored,
                                                    caplog):
    archive = _upload(testapp, ticket, b"bytes lost\n" * 100)
    _forget_md5(engine, archive["id"])
    [key] = stored.keys()
    stored.backend.delete(key)
    caplog.set_level(logging.INFO, logger="collector.archives.checksums")
    worker.submit(archive["id"], key)
    assert worker.join(WAIT)
    [record] = [r for r in caplog.records if r.name == "collector.archives.checksums"]
    assert record.levelno == logging.WARNING
    assert f"archive {archive['id']} has no stored bytes" in record.getMessage()
    assert _md5_of_row(engine, archive["id"]) is None


def test_the_ticket_page_says_being_computed(testapp, ticket, engine, staff, web_login):
    archive = _upload(testapp, ticket, b"page\n" * 100)
    _forget_md5(engine, archive["id"])
    web_login(testapp, staff)
    page = testapp.get("/platforms/vm6/tickets/77/")
    row = page.html.find(id=f"archive-{archive['id']}")
    pending = row.find(class_="md5-pending")
    assert pending is not None and pending.get_text() == "being computed…"
    assert row.find(class_="md5") is None
    assert [b["aria-label"] for b in row.find_all(class_="copy-button")] == ["Copy sha256"]
