#!/usr/bin/env python3
"""`collector backup`, `verify` and `restore` on a few hundred MB of archives, beside `cp`.

    .venv/bin/python bench/backup.py [--db sqlite|postgresql] [--count 40] [--size 8MiB]

Makes an installation in a temporary DATA_DIR under the repository's ``var/`` (migrated
database, one ticket, ``--count`` archives of random bytes with their rows), then times
the real console commands, each a process of its own:

* the console's start alone (``import collector.cli``), part of every command's time;
* backup to the same disk (hard links), and to ``/dev/shm`` (a copy), beside
  ``cp -r DATA_DIR/archives`` to ``/dev/shm``;
* ``verify --hashes`` of the installation and ``verify --backup --hashes`` of the copy,
  beside ``sha256sum`` of the same files;
* restore from ``/dev/shm`` into a new data dir and a new database (a copy, each file
  fsynced), beside ``cp -r`` of the backup's archives back to the disk and ``sync -f``.

The page cache is warm for every row alike (nothing drops it: the machine is shared).
Everything made is removed at the end (the PostgreSQL databases dropped), also on failure.
"""

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1/postgres")
MiB = 1024 * 1024
INI = """[app:main]
use = egg:logs-collector
secret_key = bench-backup-secret-0123456789
allowed_hosts = localhost
data_dir = {data_dir}
db_url = {db_url}
"""


def parse_size(text):
    units = {"KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[:-len(unit)]) * factor)
    return int(text)


def timed(command, **kwargs):
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{result.stdout}"
                         f"{result.stderr}")
    return elapsed, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def new_database(kind, directory, made):
    if kind == "sqlite":
        return f"sqlite:///{directory / 'db.sqlite3'}"
    import psycopg

    name = f"bench_backup_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    made.append(name)
    from collector.settings import as_db_url

    return as_db_url(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")


def populate(db_url, data_dir, count, size):
    from sqlalchemy.orm import Session

    import collector.models  # noqa: F401
    from collector.archives.models import Archive
    from collector.cli import migrate
    from collector.db import make_engine
    from collector.tickets import services

    engine = make_engine(db_url)
    migrate(engine)
    with Session(engine) as session, session.begin():
        platform = services.create_platform(session, "bench", "Bench", False, [])
        ticket = services.create_ticket(session, {"ticket.lifetime_days": 30,
                                                  "ticket.attempts": 5}, None, platform, 1)
        block = os.urandom(MiB)
        for index in range(count):
            key = uuid.uuid4().hex
            path = Path(data_dir) / "archives" / key[:2] / key
            path.parent.mkdir(parents=True, exist_ok=True)
            sha, md5 = hashlib.sha256(), hashlib.md5()
            with open(path, "wb") as out:
                for _ in range(size // MiB):
                    chunk = bytes([index % 256]) + block[1:]
                    out.write(chunk)
                    sha.update(chunk)
                    md5.update(chunk)
            session.add(Archive(ticket_id=ticket.id, storage_key=key, name=f"{index}.tar.gz",
                                size=size, md5=md5.hexdigest(), sha256=sha.hexdigest()))
    engine.dispose()
    os.sync()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", type=parse_size, default=8 * MiB)
    args = parser.parse_args()
    collector = [sys.executable, "-m", "collector.cli"]
    (REPO / "var").mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=REPO / "var"))
    shm = Path(tempfile.mkdtemp(prefix="bench-backup-", dir="/dev/shm"))
    databases = []
    try:
        data = work / "data"
        db_url = new_database(args.db, data, databases)
        data.mkdir()
        populate(db_url, data, args.count, args.size)
        ini = work / "live.ini"
        ini.write_text(INI.format(data_dir=data, db_url=db_url))
        total = args.count * args.size
        print(f"{args.db}: {args.count} archives x {args.size // MiB} MiB = "
              f"{total / MiB:.0f} MiB")
        rows = []

        def row(what, seconds, reference=None, note=""):
            rate = total / MiB / seconds
            ref = f"{reference:6.2f} s" if reference else ""
            rows.append(f"{what:<38} {seconds:6.2f} s {rate:7.0f} MiB/s   {ref:>9}  {note}")

        start_ref, _ = timed([sys.executable, "-c", "import collector.cli"])
        rows.append(f"{'console start (import only)':<38} {start_ref:6.2f} s   "
                    "(in every row below)")
        seconds, out = timed([*collector, "-c", ini, "backup", work / "backup"])
        row("backup, same disk (hard links)", seconds, note=out.split(":")[1].strip())
        cp_ref, _ = timed(["cp", "-r", data / "archives", shm / "cp-reference"])
        seconds, out = timed([*collector, "-c", ini, "backup", shm / "backup"])
        row("backup to /dev/shm (copy) | cp -r", seconds, cp_ref)
        files = [str(p) for p in (data / "archives").rglob("*") if p.is_file()]
        sum_ref, _ = timed(["sha256sum", *files])
        seconds, _ = timed([*collector, "-c", ini, "verify", "--hashes"])
        row("verify --hashes | sha256sum", seconds, sum_ref)
        seconds, _ = timed([*collector, "-c", ini, "verify", "--backup", shm / "backup",
                            "--hashes"])
        row("verify --backup --hashes | sha256sum", seconds, sum_ref)
        restored = work / "restored"
        restored_url = new_database(args.db, restored, databases)
        ini2 = work / "restored.ini"
        ini2.write_text(INI.format(data_dir=restored, db_url=restored_url))
        back_ref, _ = timed(["sh", "-c", f"cp -r '{shm / 'backup' / 'archives'}' "
                             f"'{work / 'cp-back'}' && sync -f '{work}'"])
        seconds, _ = timed([*collector, "-c", ini2, "restore", shm / "backup"])
        row("restore from /dev/shm (copy) | cp+sync", seconds, back_ref,
            "incl. sha256 of every file before")
        print(f"{'':<38} {'time':>8} {'rate':>13}   {'reference':>9}")
        print("\n".join(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
        if databases:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                for name in databases:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
