"""What stays on the local disk whichever backend holds the archives: the staging
directory (``DATA_DIR/tmp``), the inspect seek points (``DATA_DIR/index``), and the staged
file a request writes before its commit. Both backends build on it; neither imports the
other."""

import os
import time
import uuid
from pathlib import Path

from zope.interface import implementer

from collector.archives.storage.interfaces import IStaged


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


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
