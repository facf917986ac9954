"""Backup, verify and restore: the order of the steps, the manifest and the checks.

The order is what makes a backup consistent while uploads and deletions go on: first
the database copy (one snapshot), then the files *that copy's rows* name. An archive
added after the snapshot is not in the copy and not copied; one deleted after it is
found gone, recorded as ``deleted`` in the manifest (its row is no longer in the live
database) and its row removed again at restore. A file missing while its row still
exists is a real problem: reported, and the backup exits non-zero.
"""

import contextlib
import datetime as dt
import errno
import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

from collector.archives.storage.staging import fsync_dir
from collector.backup import database
from collector.backup.database import BackupError

FORMAT = "logs-collector-backup"
MANIFEST = "manifest.json"
CHUNK = 1024 * 1024


class Report:
    """What a command found: ``problems`` (one line each, non-zero exit), ``notes``
    (printed, harmless) and a one-line ``summary``."""

    def __init__(self):
        self.problems, self.notes, self.summary = [], [], ""
        # Problems the backup was made with (a file missing then): a restore reproduces
        # them faithfully rather than refusing.
        self.known = []


def app_version():
    try:
        return importlib.metadata.version("logs-collector")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


def archive_path(root, key):
    """Where an archive is under a data dir or a backup: ``archives/<key[:2]>/<key>``."""
    return Path(root) / "archives" / key[:2] / key


def sha256_of(path_or_file):
    digest = hashlib.sha256()
    with contextlib.ExitStack() as stack:
        handle = path_or_file
        if isinstance(path_or_file, (str, Path)):
            handle = stack.enter_context(open(path_or_file, "rb"))
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _private_files():
    """Every file and directory made meanwhile is the owner's alone (0600, 0700): the
    backup holds password hashes and TOTP secrets."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _make_dest(dest):
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or any(dest.iterdir()):
            raise BackupError(f"{dest} exists and is not an empty directory: a backup "
                              "never overwrites another; choose a new directory")
    try:
        dest.mkdir(mode=0o700, parents=True, exist_ok=True)
        dest.chmod(0o700)
        probe = dest / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BackupError(f"cannot write to {dest}: {exc.strerror}") from None


def _link_or_copy(source, target):
    """A hard link when both are on one filesystem (archives never change in place, so
    sharing the inode is safe), else a copy; returns ``"linked"`` or ``"copied"``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
        return "linked"
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP):
            raise
    with open(source, "rb") as src, open(target, "xb") as out:
        shutil.copyfileobj(src, out, CHUNK)
        out.flush()
        os.fsync(out.fileno())
    return "copied"


def _utc_now():
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- backup ------------------------------------------------------------------------------

def backup(settings, dest):
    """Write a backup of the installation of ``settings`` into the new directory ``dest``."""
    dest = Path(dest)
    with _private_files():
        _make_dest(dest)
        try:
            return _backup(settings, dest)
        except BaseException as error:
            # Nothing half-made is left to be taken for a backup (DEST was empty).
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(error, OSError):
                raise BackupError(f"backup failed, {dest} removed: {error}") from None
            raise


def _backup(settings, dest):
    report = Report()
    started = _utc_now()
    engine = database.engine_name(settings["db_url"])
    snapshot = database.copy_database(settings["db_url"], dest)
    storage_url = settings.get("storage.url") or ""
    entries = [{"id": row_id, "key": key, "size": size, "sha256": sha256}
               for row_id, key, size, sha256 in snapshot.rows]
    if storage_url:
        for entry in entries:
            entry["state"] = "listed"
    else:
        _copy_archives(settings, dest, entries, report)
        for directory in {archive_path(dest, e["key"]).parent for e in entries
                          if e["state"] in ("linked", "copied")}:
            fsync_dir(directory)
    db_file = dest / snapshot.file
    manifest = {
        "format": FORMAT, "format_version": 1, "app_version": app_version(),
        "started_at": started, "finished_at": _utc_now(),
        "schema_revision": snapshot.revision,
        "database": {"engine": engine, "file": snapshot.file,
                     "size": db_file.stat().st_size, "sha256": sha256_of(db_file)},
        "storage": {"kind": "s3" if storage_url else "local",
                    "location": storage_url or None,
                    "archives_copied": not storage_url},
        "archives": entries,
    }
    _write_json(dest / MANIFEST, manifest)
    states = {}
    for entry in entries:
        states[entry["state"]] = states.get(entry["state"], 0) + 1
    total = sum(entry["size"] for entry in entries if entry["state"] in ("linked", "copied"))
    counted = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    report.summary = (f"backup in {dest}: {engine} database ({manifest['database']['size']} "
                      f"bytes, revision {snapshot.revision}), {len(entries)} archive(s)"
                      f"{' (' + counted + ')' if counted else ''}, {total} bytes of files")
    if storage_url:
        report.notes.append(f"archives stay in {storage_url}: only listed in the manifest; "
                            "keep the bucket's versioning on (see docs/backup.md)")
    return report


def _copy_archives(settings, dest, entries, report):
    gone = []
    for entry in entries:
        source = archive_path(settings["data_dir"], entry["key"])
        try:
            entry["state"] = _link_or_copy(source, archive_path(dest, entry["key"]))
        except FileNotFoundError:
            gone.append(entry)
            continue
        size = archive_path(dest, entry["key"]).stat().st_size
        if size != entry["size"]:
            entry["state"] = "wrong-size"
            report.problems.append(f"archive {entry['id']} ({entry['key']}): {size} bytes "
                                   f"on disk, {entry['size']} in the database")
    # Gone since the snapshot: deleted meanwhile (no row any more) or really missing.
    live = database.live_keys(settings["db_url"], [entry["key"] for entry in gone])
    for entry in gone:
        if entry["key"] in live:
            entry["state"] = "missing"
            report.problems.append(f"archive {entry['id']} ({entry['key']}): file missing "
                                   f"at {archive_path(settings['data_dir'], entry['key'])}")
        else:
            entry["state"] = "deleted"
            report.notes.append(f"archive {entry['id']} ({entry['key']}) was deleted while "
                                "the backup ran: a restore leaves it out")


def _write_json(path, data):
    part = path.with_name(path.name + ".part")
    with open(part, "x", encoding="utf-8") as out:
        json.dump(data, out, indent=1)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(part, path)


def load_manifest(src):
    path = Path(src) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{path} not found: not a backup (or an unfinished one)") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is not a Logs Collector backup manifest")
    return manifest


# --- verify ------------------------------------------------------------------------------

def _check_file(report, label, path, size, sha256, hashes):
    """One archive's file against its expected size and hash; True when it passes."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        report.problems.append(f"{label}: missing {path}")
        return False
    if actual != size:
        report.problems.append(f"{label}: {actual} bytes, expected {size} ({path})")
        return False
    if hashes and sha256_of(path) != sha256:
        report.problems.append(f"{label}: sha256 differs ({path})")
        return False
    return True


def verify(settings, backend, hashes=False):
    """Check the live installation: every archive row has its file (or S3 object) of the
    row's size, and with ``hashes`` its sha256."""
    report = Report()
    rows = database.archive_rows(settings["db_url"])
    local = not settings.get("storage.url")
    total = 0
    for row_id, key, size, sha256 in rows:
        label = f"archive {row_id} ({key})"
        if local:
            _check_file(report, label, archive_path(settings["data_dir"], key), size, sha256,
                        hashes)
        else:
            _check_object(report, label, backend, key, size, sha256, hashes)
        total += size
    what = "sizes and sha256" if hashes else "sizes"
    report.summary = (f"verified {len(rows)} archive(s), {total} bytes ({what}): "
                      f"{len(report.problems)} problem(s)")
    return report


def _check_object(report, label, backend, key, size, sha256, hashes):
    try:
        handle = backend.open(key)
    except FileNotFoundError:
        report.problems.append(f"{label}: missing {backend.location(key)}")
        return
    with handle:
        actual = handle.seek(0, os.SEEK_END)
        if actual != size:
            report.problems.append(f"{label}: {actual} bytes, expected {size} "
                                   f"({backend.location(key)})")
        elif hashes:
            handle.seek(0)
            if sha256_of(handle) != sha256:
                report.problems.append(f"{label}: sha256 differs ({backend.location(key)})")


def verify_backup(src, hashes=False):
    """Check a backup directory against its manifest: the database copy (size and
    sha256, always), every copied archive (size; with ``hashes`` sha256) and, for an
    SQLite copy, that its rows are the manifest's."""
    src = Path(src)
    manifest = load_manifest(src)
    report = Report()
    db = manifest["database"]
    db_ok = _check_file(report, "database copy", src / db["file"], db["size"], db["sha256"],
                        hashes=True)
    entries = manifest["archives"]
    if db_ok:
        try:
            snapshot = database.read_copy(src / db["file"], db["engine"])
        except BackupError as error:
            report.problems.append(str(error))
            snapshot = None
        if snapshot is not None:
            rows = {key: (size, sha256) for _, key, size, sha256 in snapshot.rows}
            listed = {e["key"]: (e["size"], e["sha256"]) for e in entries}
            if rows != listed or snapshot.revision != manifest["schema_revision"]:
                report.problems.append("the manifest does not match the database copy's "
                                       "archive rows or schema revision")
    total = 0
    for entry in entries:
        label = f"archive {entry['id']} ({entry['key']})"
        if entry["state"] in ("linked", "copied"):
            _check_file(report, label, archive_path(src, entry["key"]), entry["size"],
                        entry["sha256"], hashes)
            total += entry["size"]
        elif entry["state"] in ("missing", "wrong-size"):
            report.known.append(f"{label}: {entry['state']} when the backup was made")
    report.problems += report.known
    what = "sizes and sha256" if hashes else "sizes"
    report.summary = (f"verified backup {src} (revision {manifest['schema_revision']}, "
                      f"{manifest['finished_at']}): {len(entries)} archive(s), {total} bytes "
                      f"of files ({what}): {len(report.problems)} problem(s)")
    return report


# --- restore -----------------------------------------------------------------------------

def _has_files(directory):
    return directory.exists() and any(p.is_file() or p.is_symlink()
                                      for p in directory.rglob("*"))


def restore(settings, src, revisions, migrate, backend=None):
    """Restore the backup ``src`` into the empty database and empty data dir of
    ``settings``. ``revisions``: the schema revisions this version knows, oldest first;
    ``migrate(db_url)`` brings a database to the newest; ``backend``: the S3 backend
    (None on the local disk) whose objects the restored rows must find. Everything is
    checked before anything is written: a refusal changes nothing."""
    src = Path(src)
    manifest = load_manifest(src)
    db_url, data_dir = settings["db_url"], Path(settings["data_dir"])
    engine = database.engine_name(db_url)
    db = manifest["database"]
    if db["engine"] != engine:
        raise BackupError(f"the backup is of a {db['engine']} database; DB_URL is {engine}")
    revision = manifest["schema_revision"]
    if revision not in revisions:
        raise BackupError(f"the backup's schema revision {revision} is unknown to this "
                          f"version (newest known: {revisions[-1]}): restore it with the "
                          f"version that made it ({manifest['app_version']}) or newer")
    on_s3 = bool(settings.get("storage.url"))
    if (manifest["storage"]["kind"] == "s3") != on_s3:
        raise BackupError(f"the backup's archives are on {manifest['storage']['kind']} "
                          f"storage; this installation's are on {'s3' if on_s3 else 'local'}")
    sqlite_file = database.sqlite_path(db_url) if engine == "sqlite" else None
    if data_dir.exists() and any(path.is_file() and path != sqlite_file
                                 for path in data_dir.rglob("*")):
        raise BackupError(f"DATA_DIR {data_dir} is not empty: restore into an empty one")
    if not database.is_empty(db_url):
        raise BackupError("the database is not empty: restore into an empty one")
    database.check_tools(engine)
    checked = verify_backup(src, hashes=True)
    mismatches = [problem for problem in checked.problems if problem not in checked.known]
    if mismatches:
        raise BackupError("the backup does not match its manifest (nothing was changed):\n"
                          + "\n".join(mismatches))
    try:
        return _restore(settings, src, manifest, revisions, migrate, backend)
    except OSError as error:
        raise BackupError(f"restore failed: {error}; empty the database and DATA_DIR, then "
                          "run it again (the backup is unchanged)") from None


def _restore(settings, src, manifest, revisions, migrate, backend):
    db_url, data_dir = settings["db_url"], Path(settings["data_dir"])
    engine, db, revision = (database.engine_name(db_url), manifest["database"],
                            manifest["schema_revision"])
    on_s3 = bool(settings.get("storage.url"))
    report = Report()
    with _private_files():
        database.restore_database(src / db["file"], engine, db_url)
    entries = manifest["archives"]
    deleted = [e["key"] for e in entries if e["state"] == "deleted"]
    if deleted:
        database.delete_archive_rows(db_url, deleted)
        report.notes.append(f"left out {len(deleted)} archive(s) deleted while the backup ran")
    total = 0
    if not on_s3:
        for entry in entries:
            if entry["state"] in ("linked", "copied"):
                _link_or_copy(archive_path(src, entry["key"]),
                              archive_path(data_dir, entry["key"]))
                total += entry["size"]
        # Each file was fsynced; the directory entries that name them, once each.
        for directory in {archive_path(data_dir, e["key"]).parent for e in entries
                          if e["state"] in ("linked", "copied")}:
            fsync_dir(directory)
    if revision != revisions[-1]:
        migrate(db_url)
        report.notes.append(f"schema migrated from {revision} to {revisions[-1]}")
    # What the restored rows name is there: the same check as ``collector verify``.
    report.problems += verify(settings, backend).problems
    report.summary = (f"restored {len([e for e in entries if e['state'] != 'deleted'])} "
                      f"archive(s) ({total} bytes of files) and the {engine} database at "
                      f"revision {database.current_revision(db_url)} from {src}")
    return report
