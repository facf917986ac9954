"""The `collector` command: migrate, create-user, create-token, purge, serve."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from collector.cli import main

# Commits: the command line opens the database itself.
pytestmark = pytest.mark.commits

INI = """[app:main]
use = egg:logs-collector
debug = {debug}
secret_key = {secret}
data_dir = {data_dir}
db_url = {db_url}
"""


@pytest.fixture
def ini(tmp_path, settings):
    path = tmp_path / "test.ini"
    storage = "".join(f"{key} = {settings[key]}\n" for key in (
        "storage.url", "storage.endpoint_url", "storage.region", "storage.quota")
        if key in settings)
    path.write_text(INI.format(debug="true", secret="cli-test-secret-0123456789",
                               data_dir=settings["data_dir"],
                               db_url=settings["db_url"].replace("%", "%%")) + storage)
    return str(path)


def test_migrate_is_idempotent(ini, capsys, app):
    main(["-c", ini, "migrate"])
    main(["-c", ini, "migrate"])
    assert capsys.readouterr().out.count("database at head") == 2


def test_create_user_and_token(ini, capsys, monkeypatch, testapp, app):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("a long password\n"))
    main(["-c", ini, "create-user", "carol", "--admin", "--password-stdin"])
    out = capsys.readouterr().out
    assert "created admin user carol" in out
    assert "otpauth://totp/" in out and "secret=" in out
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("a long password\n"))
    with pytest.raises(SystemExit, match="already exists"):
        main(["-c", ini, "create-user", "carol", "--password-stdin"])
    main(["-c", ini, "create-token", "carol", "--name", "ops"])
    token = capsys.readouterr().out.strip()
    testapp.post_json("/api/v1/platforms/", {"name": "p1", "pretty_name": "P"},
                      headers={"Authorization": f"Bearer {token}"}, status=201)
    with pytest.raises(SystemExit, match="no user"):
        main(["-c", ini, "create-token", "nobody"])


def test_purge_removes_orphans_and_stale_staging(ini, capsys, testapp, factory, data_dir):
    ticket = factory.ticket(factory.platform("vm6"), 1)
    testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"kept")],
                 headers={"Upload-Token": ticket.token}, status=201)
    [kept_key] = [path.name for path in (data_dir / "archives").glob("??/*")]
    orphan = data_dir / "archives" / "ff" / ("ff" + "0" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"orphan")
    stale = data_dir / "tmp" / "dead.part"
    stale.write_bytes(b"partial")
    # Seek points of an archive that is gone, half-written ones, and a live archive's.
    index = data_dir / "index"
    gone_index = index / f"{'ee' * 16}.gzidx"
    half_written = index / f"{kept_key}.gzidx.4242.part"
    live_index = index / f"{kept_key}.gzidx"
    for path in (gone_index, half_written, live_index):
        path.write_bytes(b"seek points")
    # Young files may belong to a transaction committing right now: left for a later run.
    main(["-c", ini, "purge"])
    assert orphan.exists() and "removed 0 file(s)" in capsys.readouterr().out
    main(["-c", ini, "purge", "--dry-run", "--stale-hours", "0"])
    assert orphan.exists() and "would remove 4 file(s)" in capsys.readouterr().out
    main(["-c", ini, "purge", "--stale-hours", "0"])
    out = capsys.readouterr().out
    assert "removed 4 file(s)" in out and str(orphan) in out
    assert f"removed orphan index file {gone_index}" in out
    assert not orphan.exists() and not stale.exists()
    assert not gone_index.exists() and not half_written.exists() and live_index.exists()
    kept = [p for p in (data_dir / "archives").rglob("*") if p.is_file()]
    assert len(kept) == 1 and kept[0].read_bytes() == b"kept"


@pytest.mark.parametrize("storage_kind", ["s3"])
def test_purge_finds_orphans_and_unfinished_uploads_on_s3(ini, capsys, testapp, factory,
                                                          data_dir, app, s3_server, stored):
    """An object with no row (a crash between the vote and the commit) and a multipart
    upload never completed (a crash while staging) are removed; the archive stays."""
    ticket = factory.ticket(factory.platform("vm6"), 1)
    testapp.post("/api/v1/archives/", upload_files=[("file", "a", b"kept")],
                 headers={"Upload-Token": ticket.token}, status=201)
    backend = app.registry["archive_storage"]
    client, prefix = s3_server.client(), backend.prefix
    orphan = f"{prefix}archives/ff/ff{'0' * 30}"
    client.put_object(Bucket=s3_server.bucket, Key=orphan, Body=b"orphan")
    client.create_multipart_upload(Bucket=s3_server.bucket,
                                   Key=f"{prefix}archives/ee/ee{'0' * 30}")
    (data_dir / "tmp" / "dead.part").write_bytes(b"partial")
    main(["-c", ini, "purge", "--dry-run", "--stale-hours", "0"])
    out = capsys.readouterr().out
    assert "would remove 3 file(s)" in out and f"s3://{s3_server.bucket}/{orphan}" in out
    assert orphan in s3_server.objects(prefix)
    main(["-c", ini, "purge", "--stale-hours", "0"])
    out = capsys.readouterr().out
    assert "removed 3 file(s)" in out and "multipart upload" in out
    assert s3_server.multipart_uploads(prefix) == []
    [key] = stored.keys()
    assert stored.read(key) == b"kept" and stored.leftovers() == []


def test_production_refuses_default_secret(tmp_path):
    path = tmp_path / "prod.ini"
    path.write_text(INI.format(debug="false", secret="", data_dir=tmp_path, db_url=""))
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    res = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(path), "migrate"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error: SECRET_KEY")
    assert "Traceback" not in res.stderr


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_prints_first_run_hint_and_answers(tmp_path):
    """`collector serve` on a fresh SQLite data dir (what `make run` does)."""
    path = tmp_path / "dev.ini"
    path.write_text(INI.format(debug="true", secret="x", data_dir=tmp_path / "var", db_url=""))
    port = _free_port()
    env = {**os.environ, "WAITRESS_LISTEN": f"127.0.0.1:{port}"}
    collector = [sys.executable, "-m", "collector.cli", "-c", str(path)]
    subprocess.run([*collector, "migrate"], check=True, capture_output=True, timeout=60)
    out_path = tmp_path / "serve.out"
    with open(out_path, "w") as out:
        server = subprocess.Popen([*collector, "serve"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/check/health/",
                                            timeout=2) as res:
                    assert res.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=10)
    output = Path(out_path).read_text()
    assert "create-user admin --admin" in output
    assert f"serving on http://127.0.0.1:{port}" in output
    assert (tmp_path / "var" / "db.sqlite3").is_file()


def test_version_is_the_installed_distributions(capsys):
    from importlib import metadata

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"collector {metadata.version('logs-collector')}\n"
