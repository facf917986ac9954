"""The local disk: ``LocalFiles`` (what stays on the local disk for every backend) and
``LocalArchiveStorage`` (finished archives as files, ``archives/<key[:2]>/<key>``)."""

import os
import shutil
import time
import uuid
from pathlib import Path

from zope.interface import implementer

from collector.archives.storage import streams
from collector.archives.storage.interfaces import IArchiveStorage, IStaged


@implementer(IStaged)
class StagedFile:
    def __init__(self, key, path, adopted=False):
        self.key = key
        self.path = path
        self.size = 0
        self.md5 = None
        self.sha256 = None
        # An adopted file was written elsewhere (a finished tus upload): an abort leaves
        # it where it was instead of removing it.
        self.adopted = adopted


class LocalFiles:
    """``DATA_DIR/tmp`` (staging) and ``DATA_DIR/index`` (inspect seek points): local,
    whichever backend holds archives. (Partial tus uploads: ``uploads.py``.)"""

    def __init__(self, data_dir):
        self.root = Path(data_dir)
        self.staging = self.root / "tmp"
        # Derived data of an archive (the gzip seek points of its member index).
        self.indexes = self.root / "index"
        for path in (self.staging, self.indexes):
            path.mkdir(parents=True, exist_ok=True)

    def staging_file(self):
        """A new, unused name in the staging directory."""
        return self.staging / f"{uuid.uuid4().hex}.part"

    def index_path(self, key, suffix):
        return self.indexes / f"{key}.{suffix}"

    def derived_files(self, older_than=0.0):
        """``(archive key, path)`` of each derived file not written to for
        ``older_than`` seconds (purge: those of archives that are gone, and half-written
        ones a crashed build left, ``<key>.gzidx.<pid>.part``)."""
        limit = time.time() - older_than
        for child in self.indexes.iterdir():
            if child.is_file() and child.stat().st_mtime <= limit:
                yield child.name.split(".", 1)[0], child

    def delete_derived(self, key):
        for derived in self.indexes.glob(f"{key}.*"):
            derived.unlink(missing_ok=True)

    def stale_staging(self, older_than):
        limit = time.time() - older_than
        for child in self.staging.iterdir():
            if child.is_file() and child.stat().st_mtime <= limit:
                yield child

    def remove_stale(self, item):
        item.unlink(missing_ok=True)


@implementer(IArchiveStorage)
class LocalArchiveStorage(LocalFiles):
    """Archives on the local filesystem: ``archives/<key[:2]>/<key>``; staged in
    ``tmp/`` (same filesystem), published by an atomic rename."""

    def __init__(self, data_dir):
        super().__init__(data_dir)
        self.archives = self.root / "archives"
        self.archives.mkdir(parents=True, exist_ok=True)

    def path(self, key):
        return self.archives / key[:2] / key

    def location(self, key):
        """Where the archive is, for messages (purge)."""
        return str(self.path(key))

    def new_staged(self):
        key = uuid.uuid4().hex
        return StagedFile(key, self.staging / f"{key}.part")

    def write(self, staged, chunks, max_size):
        return streams.write_stream(staged, chunks, max_size)

    def adopt(self, path, size, md5, sha256):
        staged = StagedFile(uuid.uuid4().hex, Path(path), adopted=True)
        staged.size, staged.md5, staged.sha256 = size, md5, sha256
        return staged

    def publish(self, staged):
        target = self.path(staged.key)
        target.parent.mkdir(exist_ok=True)
        os.rename(staged.path, target)
        fsync_dir(target.parent)

    def unpublish(self, staged):
        if staged.adopted:
            os.rename(self.path(staged.key), staged.path)
        else:
            self.path(staged.key).unlink(missing_ok=True)

    def discard(self, staged):
        if not staged.adopted:
            staged.path.unlink(missing_ok=True)

    def release(self, staged):
        pass  # the staged name became the archive's at publish

    def delete(self, key):
        self.path(key).unlink(missing_ok=True)
        # What was derived from the archive goes with it.
        self.delete_derived(key)

    def open(self, key):
        return open(self.path(key), "rb")

    def exists(self, key):
        return self.path(key).is_file()

    def keys(self, older_than=0.0):
        # ctime, not mtime: the rename (or the importer's hard link) that put the file in
        # place changes the inode's ctime; its mtime may be far older.
        limit = time.time() - older_than
        for child in self.archives.glob("??/*"):
            if child.is_file() and child.stat().st_ctime <= limit:
                yield child.name

    def usage(self):
        total, used, free = shutil.disk_usage(self.archives)
        return {"total": total, "used": used, "free": free}

    # Health checks come often (load balancers); a disk's state is re-probed every 5 s.
    WRITABLE_TTL = 5.0
    _writable = (float("-inf"), False)

    def writable(self):
        checked, result = self._writable
        if time.monotonic() - checked < self.WRITABLE_TTL:
            return result
        probe = self.staging / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
            result = True
        except OSError:
            result = False
        self._writable = (time.monotonic(), result)
        return result


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
