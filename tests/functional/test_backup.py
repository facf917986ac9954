"""`collector backup`, `verify` and `restore`: a consistent copy while uploads run, a
restore into a fresh place that signs in and downloads, and the hostile cases."""

import hashlib
import http.client
import json
import os
import threading
import urllib.parse

import pyotp
import pytest
import webtest
from serverproc import database

from collector import main as make_app
from collector.backup import services as backup_services
from collector.cli import main

# The command line opens the database itself; SQLite and PostgreSQL copy differently.
pytestmark = [pytest.mark.commits, pytest.mark.sqlite]

INI = """[app:main]
use = egg:logs-collector
debug = true
secret_key = backup-test-secret-0123456789
data_dir = {data_dir}
db_url = {db_url}
"""


STORAGE_KEYS = ("storage.url", "storage.endpoint_url", "storage.region", "storage.quota")


def _ini(path, data_dir, db_url, settings=None):
    storage = "".join(f"{key} = {settings[key]}\n" for key in STORAGE_KEYS
                      if settings and key in settings)
    path.write_text(INI.format(data_dir=data_dir, db_url=db_url.replace("%", "%%")) + storage)
    return str(path)


@pytest.fixture
def ini(tmp_path, settings):
    return _ini(tmp_path / "live.ini", settings["data_dir"], settings["db_url"], settings)


@pytest.fixture
def ticket(factory):
    return factory.ticket(factory.platform("vm6"), 1, attempts=100)


def _upload(testapp, ticket, body, name="a.log"):
    return testapp.put(f"/api/v1/archives/{name}", body,
                       headers={"Upload-Token": ticket.token}, status=201).json


def _run(capsys, *argv):
    """The command's exit status and its output lines."""
    try:
        main(list(argv))
        status = 0
    except SystemExit as exc:
        status = exc.code
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    if isinstance(status, str):  # SystemExit("error: …")
        out.append(status)
        status = 1
    return status, out


def _manifest(dest):
    return json.loads((dest / "manifest.json").read_text())


def _uploader(url, ticket, count, results):
    parts = urllib.parse.urlsplit(url)
    for index in range(count):
        body = f"log line {index} {threading.get_ident()}\n".encode() * 50
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("PUT", f"/api/v1/archives/t{index}.log", body=body,
                               headers={"Upload-Token": ticket.token})
            results.append(connection.getresponse().status)
        finally:
            connection.close()


def test_backup_while_uploading_restores_into_a_fresh_place(
        ini, capsys, testapp, factory, ticket, live_server, db_backend, tmp_path,
        monkeypatch):
    admin = factory.user("root", admin=True, password="a long password")
    for index in range(3):
        _upload(testapp, ticket, f"before {index}\n".encode() * 100, f"b{index}.log")
    results = []
    copy = backup_services.database.copy_database

    def copy_while_uploading(db_url, dest):
        # The snapshot is taken while uploads are committing; files are copied after more
        # of them have landed (they must not be in the backup).
        while not results:
            threading.Event().wait(0.01)
        snapshot = copy(db_url, dest)
        while len(results) < 12:
            threading.Event().wait(0.01)
        return snapshot

    monkeypatch.setattr(backup_services.database, "copy_database", copy_while_uploading)
    threads = [threading.Thread(target=_uploader, args=(live_server, ticket, 6, results))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    dest = tmp_path / "backup"
    try:
        status, out = _run(capsys, "-c", ini, "backup", str(dest))
    finally:
        for thread in threads:
            thread.join(timeout=60)
    assert status == 0, out
    assert results == [201] * 18
    # Private: the backup holds password hashes and TOTP secrets.
    assert (dest.stat().st_mode & 0o777) == 0o700
    for path in dest.rglob("*"):
        if path.is_dir():
            assert (path.stat().st_mode & 0o777) == 0o700, path
    for name in ("manifest.json", "database.sqlite3", "database.pgdump"):
        if (dest / name).exists():
            assert ((dest / name).stat().st_mode & 0o777) == 0o600
    manifest = _manifest(dest)
    assert manifest["schema_revision"] and manifest["app_version"]
    archives = manifest["archives"]
    # At least the three made before; each in the copy has its file (same filesystem).
    assert 3 < len(archives) < 3 + 18
    assert {entry["state"] for entry in archives} == {"linked"}
    assert _run(capsys, "-c", ini, "verify", "--backup", str(dest), "--hashes")[0] == 0

    # Restore into a new data dir and a new database.
    with database(db_backend, tmp_path / "restored-db") as db_url:
        restored = tmp_path / "restored"
        ini2 = _ini(tmp_path / "restored.ini", restored, db_url)
        status, out = _run(capsys, "-c", ini2, "restore", str(dest))
        assert status == 0, out
        assert out[-1].startswith(f"restored {len(archives)} archive(s)")
        status, out = _run(capsys, "-c", ini2, "verify", "--hashes")
        assert status == 0 and out[-1].startswith(f"verified {len(archives)} archive(s)")
        application = make_app({}, debug="true", secret_key="x" * 32, db_url=db_url,
                               data_dir=str(restored), **{"webhooks.worker": "false"})
        try:
            restored_app = webtest.TestApp(application, extra_environ={
                "HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"})
            # The same password and the same TOTP secret work on the restored installation.
            pair = restored_app.post_json("/api/v1/auth/token/", {
                "username": "root", "password": "a long password",
                "otp": pyotp.TOTP(admin.totp_secret).now()}).json
            headers = {"Authorization": f"Bearer {pair['access']}"}
            for entry in archives:
                body = restored_app.get(f"/api/v1/archives/{entry['id']}/download",
                                        headers=headers).body
                assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        finally:
            _dispose(application)


def _dispose(application):
    while not hasattr(application, "registry"):
        application = application.app
    application.registry["db_engine"].dispose()


def test_backup_refuses_a_used_or_unwritable_destination(ini, capsys, tmp_path, db_backend):
    used = tmp_path / "used"
    used.mkdir()
    (used / "manifest.json").write_text("an earlier backup")
    status, out = _run(capsys, "-c", ini, "backup", str(used))
    assert status == 1 and "exists and is not an empty directory" in out[-1]
    assert (used / "manifest.json").read_text() == "an earlier backup"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    status, out = _run(capsys, "-c", ini, "backup", str(a_file))
    assert status == 1 and "not an empty directory" in out[-1]
    status, out = _run(capsys, "-c", ini, "backup", str(a_file / "below"))
    assert status == 1 and out[-1].startswith("error: cannot write to")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        status, out = _run(capsys, "-c", ini, "backup", str(locked / "dest"))
        assert status == 1 and "cannot write to" in out[-1]
    # An empty directory is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(capsys, "-c", ini, "backup", str(empty))[0] == 0


def test_backup_reports_a_missing_file_and_leaves_out_one_deleted_meanwhile(
        ini, capsys, testapp, ticket, data_dir, tmp_path, monkeypatch, dbsession,
        db_backend):
    from collector.archives.models import Archive

    kept, lost, deleted = (_upload(testapp, ticket, f"{n}\n".encode() * 10, f"{n}.log")
                           for n in ("kept", "lost", "deleted"))
    rows = {row.id: row for row in dbsession.query(Archive)}
    backup_services.archive_path(data_dir, rows[lost["id"]].storage_key).unlink()
    copy = backup_services.database.copy_database

    def copy_then_delete(db_url, dest):
        snapshot = copy(db_url, dest)
        # Staff delete an archive after the snapshot, before its file is copied.
        testapp.delete(f"/api/v1/archives/{deleted['id']}/", headers=_staff(dbsession),
                       status=204)
        return snapshot

    monkeypatch.setattr(backup_services.database, "copy_database", copy_then_delete)
    dest = tmp_path / "backup"
    status, out = _run(capsys, "-c", ini, "backup", str(dest))
    lost_key = rows[lost["id"]].storage_key
    assert status == 1
    assert f"problem: archive {lost['id']} ({lost_key}): file missing at " \
        f"{backup_services.archive_path(data_dir, lost_key)}" in out
    assert any("was deleted while the backup ran" in line for line in out)
    states = {entry["id"]: entry["state"] for entry in _manifest(dest)["archives"]}
    assert states == {kept["id"]: "linked", lost["id"]: "missing", deleted["id"]: "deleted"}
    status, out = _run(capsys, "-c", ini, "verify", "--backup", str(dest))
    assert status == 1 and f"problem: archive {lost['id']} ({lost_key}): missing when the " \
        "backup was made" in out

    with database(db_backend, tmp_path / "restored-db") as db_url:
        ini2 = _ini(tmp_path / "restored.ini", tmp_path / "restored", db_url)
        status, out = _run(capsys, "-c", ini2, "restore", str(dest))
        # The deleted archive's row is left out; the missing file is reported.
        assert "left out 1 archive(s) deleted while the backup ran" in out
        assert status == 1 and any(f"archive {lost['id']} ({lost_key}): missing" in line
                                   for line in out)


def _staff(dbsession):
    from collector.accounts import services, tokens

    user = services.create_user(dbsession, "ops", "a long password", is_admin=True)
    _, secret = tokens.create_personal_token(dbsession, user, "t", mfa=True)
    dbsession.commit()
    return {"Authorization": f"Bearer {secret}"}


def test_verify_finds_truncated_missing_and_altered_files(ini, capsys, testapp, ticket,
                                                          data_dir, dbsession, db_backend):
    from collector.archives.models import Archive

    made = [_upload(testapp, ticket, f"{n}\n".encode() * 100, f"{n}.log") for n in range(4)]
    assert _run(capsys, "-c", ini, "verify", "--hashes")[0] == 0
    keys = {row.id: row.storage_key for row in dbsession.query(Archive)}
    truncated, missing, altered = (backup_services.archive_path(data_dir, keys[a["id"]])
                                   for a in made[:3])
    with open(truncated, "r+b") as handle:
        handle.truncate(10)
    missing.unlink()
    altered.write_bytes(b"X" * altered.stat().st_size)
    status, out = _run(capsys, "-c", ini, "verify")
    assert status == 1
    assert out == [
        f"problem: archive {made[0]['id']} ({keys[made[0]['id']]}): 10 bytes, expected "
        f"{made[0]['size']} ({truncated})",
        f"problem: archive {made[1]['id']} ({keys[made[1]['id']]}): missing {missing}",
        "verified 4 archive(s), 800 bytes (sizes): 2 problem(s)"]
    status, out = _run(capsys, "-c", ini, "verify", "--hashes")
    assert status == 1 and out[-1].endswith("(sizes and sha256): 3 problem(s)")
    assert f"problem: archive {made[2]['id']} ({keys[made[2]['id']]}): sha256 differs " \
        f"({altered})" in out


TAMPERED = {  # what is changed in the manifest: what restore and verify say
    "size": (lambda m: m["archives"][0].update(size=m["archives"][0]["size"] + 1),
             "bytes, expected"),
    "sha256": (lambda m: m["archives"][0].update(sha256="0" * 64), "sha256 differs"),
    "database": (lambda m: m["database"].update(sha256="0" * 64),
                 "database copy: sha256 differs"),
    "revision": (lambda m: m.update(schema_revision="9999"),
                 "schema revision 9999 is unknown"),
}


def test_restore_refuses_a_tampered_backup_and_changes_nothing(
        ini, capsys, testapp, ticket, tmp_path, db_backend):
    _upload(testapp, ticket, b"one\n" * 100)
    dest = tmp_path / "backup"
    assert _run(capsys, "-c", ini, "backup", str(dest))[0] == 0
    original = (dest / "manifest.json").read_text()
    with database(db_backend, tmp_path / "restored-db") as db_url:
        restored = tmp_path / "restored"
        ini2 = _ini(tmp_path / "restored.ini", restored, db_url)
        for tamper, (change, expected) in TAMPERED.items():
            manifest = json.loads(original)
            change(manifest)
            (dest / "manifest.json").write_text(json.dumps(manifest))
            if tamper != "revision":
                status, out = _run(capsys, "-c", ini, "verify", "--backup", str(dest),
                                   "--hashes")
                assert status == 1 and expected in "\n".join(out), tamper
            status, out = _run(capsys, "-c", ini2, "restore", str(dest))
            assert status == 1 and expected in "\n".join(out), tamper
            assert not restored.exists() or not [p for p in restored.rglob("*")
                                                 if p.is_file()]
            assert backup_services.database.is_empty(db_url)
        (dest / "manifest.json").write_text(original)
        assert _run(capsys, "-c", ini2, "restore", str(dest))[0] == 0


def test_restore_refuses_a_database_or_data_dir_in_use(ini, capsys, testapp, ticket,
                                                       tmp_path, db_backend):
    _upload(testapp, ticket, b"one\n" * 100)
    dest = tmp_path / "backup"
    assert _run(capsys, "-c", ini, "backup", str(dest))[0] == 0
    # Into the installation it came from: neither is empty.
    status, out = _run(capsys, "-c", ini, "restore", str(dest))
    assert status == 1 and "is not empty" in out[-1]
    with database(db_backend, tmp_path / "restored-db") as db_url:
        used = tmp_path / "used-data"
        (used / "archives").mkdir(parents=True)
        (used / "archives" / "something").write_bytes(b"x")
        ini2 = _ini(tmp_path / "restored.ini", used, db_url)
        status, out = _run(capsys, "-c", ini2, "restore", str(dest))
        assert status == 1 and out[-1] == f"error: DATA_DIR {used} is not empty: restore " \
            "into an empty one"
        assert backup_services.database.is_empty(db_url)
        assert [p.name for p in used.rglob("*")] == ["archives", "something"]


def test_restore_migrates_an_older_backup_forward(capsys, tmp_path):
    """A backup made at an older schema revision is brought to the newest on restore."""
    from alembic import command
    from alembic.config import Config

    from collector.cli import ALEMBIC_DIR, _revisions
    from collector.db import make_engine

    old_url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(old_url)
    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    revisions = _revisions()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revisions[-2])
    engine.dispose()
    old_ini = _ini(tmp_path / "old.ini", tmp_path / "old-data", old_url)
    assert _run(capsys, "-c", old_ini, "backup", str(tmp_path / "backup"))[0] == 0
    assert _manifest(tmp_path / "backup")["schema_revision"] == revisions[-2]
    new_ini = _ini(tmp_path / "new.ini", tmp_path / "new-data",
                   f"sqlite:///{tmp_path / 'new-data' / 'db.sqlite3'}")
    status, out = _run(capsys, "-c", new_ini, "restore", str(tmp_path / "backup"))
    assert status == 0, out
    assert f"schema migrated from {revisions[-2]} to {revisions[-1]}" in out
    assert out[-1].endswith(f"at revision {revisions[-1]} from {tmp_path / 'backup'}")


def test_pg_dump_or_pg_restore_missing_is_one_clear_line(ini, capsys, tmp_path, monkeypatch,
                                                         db_backend):
    if db_backend != "postgresql":
        pytest.skip("pg_dump and pg_restore are PostgreSQL's")
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", "")
    dest = tmp_path / "backup"
    status, out = _run(capsys, "-c", ini, "backup", str(dest))
    assert status == 1
    assert out == ["error: pg_dump not found on PATH: install the PostgreSQL client programs "
                   "(the same major version as the server, or newer)"]
    assert not dest.exists()
    monkeypatch.setenv("PATH", path)
    assert _run(capsys, "-c", ini, "backup", str(dest))[0] == 0
    monkeypatch.setenv("PATH", "")
    with database(db_backend, tmp_path / "restored-db") as db_url:
        ini2 = _ini(tmp_path / "restored.ini", tmp_path / "restored", db_url)
        status, out = _run(capsys, "-c", ini2, "restore", str(dest))
        assert status == 1 and out[-1].startswith("error: pg_restore not found on PATH")
        assert backup_services.database.is_empty(db_url)




@pytest.mark.parametrize("storage_kind", ["s3"])
def test_s3_archives_are_listed_verified_and_found_again(
        ini, capsys, testapp, ticket, tmp_path, db_backend, settings, s3_server, stored):
    """On S3 the bucket keeps the bytes (and its versioning their history): the backup
    lists them; verify reads each object's size (and with --hashes its bytes)."""
    made = [_upload(testapp, ticket, f"{n}\n".encode() * 100, f"{n}.log") for n in range(2)]
    dest = tmp_path / "backup"
    status, out = _run(capsys, "-c", ini, "backup", str(dest))
    assert status == 0 and "only listed in the manifest" in out[0]
    manifest = _manifest(dest)
    assert manifest["storage"]["kind"] == "s3" and not (dest / "archives").exists()
    assert {entry["state"] for entry in manifest["archives"]} == {"listed"}
    assert _run(capsys, "-c", ini, "verify", "--hashes")[0] == 0
    with database(db_backend, tmp_path / "restored-db") as db_url:
        ini2 = _ini(tmp_path / "restored.ini", tmp_path / "restored", db_url, settings)
        assert _run(capsys, "-c", ini2, "restore", str(dest))[0] == 0
        [gone, _] = stored.keys()
        stored.backend.delete(gone)
        status, out = _run(capsys, "-c", ini2, "verify")
        assert status == 1 and out[0].startswith("problem: archive ") and \
            out[0].endswith(f"({gone}): missing {stored.backend.location(gone)}")
        assert len(made) == 2


def test_an_unreachable_database_is_one_line_and_leaves_nothing(capsys, tmp_path, db_backend,
                                                                settings):
    if db_backend == "sqlite":
        db_url, expected = f"sqlite:///{tmp_path / 'none.sqlite3'}", "error: no database at"
    else:
        from sqlalchemy.engine import make_url

        db_url = make_url(settings["db_url"]).set(database="no_such_database_here")
        db_url = db_url.render_as_string(hide_password=False)
        expected = "error: cannot use the database: "
    ini = _ini(tmp_path / "gone.ini", tmp_path / "data", db_url)
    status, out = _run(capsys, "-c", ini, "backup", str(tmp_path / "backup"))
    assert status == 1 and out[-1].startswith(expected) and len(out) == 1
    assert not (tmp_path / "backup").exists()
    if db_backend == "postgresql":
        status, out = _run(capsys, "-c", ini, "verify")
        assert status == 1 and out[-1].startswith(expected)
