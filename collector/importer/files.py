"""The old installation's archive files: bringing one into the storage manager (a copy, or
a hard link for ``--link`` and ``--move``), with progress, and finding the files that no
row references."""

import errno
import hashlib
import os
import sys
import time
from pathlib import PurePosixPath

from collector.archives.storage import CHUNK
from collector.importer.summary import Skip

MODES = ("copy", "link", "move")
VERBS = {"copy": "copied", "link": "hard-linked", "move": "moved"}
# Progress lines for an archive copy at most this often, for files above PROGRESS_FROM.
PROGRESS_EVERY = 2.0
PROGRESS_FROM = 64 * 1024 * 1024


def read_chunks(path):
    with open(path, "rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


class Md5Through:
    """The chunks as they pass, md5 kept: the storage manager computes an archive's md5
    only for small ones (the rest in the background), and the importer checks the md5
    the old database recorded for every file, whatever its size."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.digest = hashlib.md5()

    def __iter__(self):
        for chunk in self.chunks:
            self.digest.update(chunk)
            yield chunk

    def hexdigest(self):
        return self.digest.hexdigest()


def hash_file(chunks):
    md5, sha256, size = hashlib.md5(), hashlib.sha256(), 0
    for chunk in chunks:
        md5.update(chunk)
        sha256.update(chunk)
        size += len(chunk)
    return size, md5.hexdigest(), sha256.hexdigest()


class Transfer:
    """Old files into ``storage`` (a StorageManager) within the item's transaction.

    ``aborted()`` and ``committed()`` are called after the item's transaction ends: the
    hard links this made in staging go if it aborted, the old files of ``--move`` go once
    it committed.
    """

    def __init__(self, storage, mode, reserve, out):
        self.storage, self.mode, self.reserve, self.out = storage, mode, reserve, out
        self._links = []
        self._moved = []

    def bring(self, path, size):
        """The old file as a staged archive and the md5 of its bytes (read here, for the
        check against the old database): a copy (default) or a second name (``--link``,
        ``--move`` on the same filesystem)."""
        if self.mode != "copy":
            link = self.storage.backend.staging_file()
            try:
                os.link(path, link)
            except OSError as exc:
                if not (self.mode == "move" and exc.errno == errno.EXDEV):
                    raise Skip("skipped", f"cannot hard-link it ({exc.strerror}): import "
                               "without --link (a copy)") from None
            else:
                self._links.append(link)
                if self.mode == "move":
                    self._moved.append(path)
                found = hash_file(self._progress(read_chunks(link), size))
                return self.storage.adopt(link, *found), found[1]
        free = self.storage.backend.usage()["free"] - self.reserve
        if size > free:
            raise Skip("skipped", f"not enough free space ({free} bytes free after the "
                       "reserve): not imported")
        # No upload limit: the archive was accepted by the old installation already.
        read = Md5Through(self._progress(read_chunks(path), size))
        staged = self.storage.stage(read, sys.maxsize)
        if self.mode == "move":
            self._moved.append(path)
        return staged, read.hexdigest()

    def aborted(self):
        for path in self._links:
            path.unlink(missing_ok=True)
        self._links, self._moved = [], []

    def committed(self):
        # The links were renamed into place at the commit; the old names may go now.
        for path in self._moved:
            path.unlink(missing_ok=True)
        self._links, self._moved = [], []

    def _progress(self, chunks, size):
        done, last = 0, time.monotonic()
        for chunk in chunks:
            done += len(chunk)
            if size >= PROGRESS_FROM and time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                self.out(f"  … {done} of {size} bytes ({done * 100 // size} %)", flush=True)
            yield chunk


def unreferenced(archives_dir, stored_paths):
    """Files under ``archives_dir`` whose relative path is not one of ``stored_paths``."""
    referenced = {str(PurePosixPath(path or "")) for path in stored_paths}
    found = []
    for path in sorted(archives_dir.rglob("*")):
        if path.is_file():
            relative = path.relative_to(archives_dir).as_posix()
            if relative not in referenced:
                found.append(relative)
    return found
