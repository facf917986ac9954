"""Partial tus uploads as local files, ``DATA_DIR/uploads/<key>`` (``LocalUploadStore``),
and the choice of store for each upload (``UploadStores``).

A chunk is appended to the file and fsynced before the rules commit the new offset; the
file may hold bytes past the committed offset after a crash, so they are cut off before
the next chunk is written. An ``flock`` on the file keeps two requests of one machine
apart. At the last byte a second name of the file (a hard link in staging) becomes the
archive: renamed into place at commit, never copied, while the file's own name stays
until the commit, so a crash at any point leaves either the whole upload or the archive.
"""

import errno
import fcntl
import os
import time
import uuid
from pathlib import Path

from zope.interface import implementer

from collector.archives.storage import linux_io
from collector.archives.storage.interfaces import IUploadStore, UploadBusy
from collector.archives.storage.spooled import SpooledBody
from collector.archives.storage.staging import fsync_dir
from collector.archives.storage.streams import WRITEBACK_EVERY, write_all

# Reading an upload back (hashing it after a restart, joining partial uploads).
READ = 8 * 1024 * 1024


class FileLock:
    """An ``flock`` held on an open descriptor (and on the file that replaced it, if a
    first chunk did: ``also``) until ``release``."""

    def __init__(self, fd, on_release=None):
        self.fds = [fd]
        self.on_release = on_release

    @property
    def fd(self):
        return self.fds[0] if self.fds else None

    def also(self, fd):
        self.fds.append(fd)

    def release(self):
        fds, self.fds = self.fds, []
        for fd in fds:
            os.close(fd)
        if fds and self.on_release is not None:
            self.on_release()


@implementer(IUploadStore)
class LocalUploadStore:
    shared = False
    label = "upload file"

    def __init__(self, directory):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # key → the FileLock this process holds on it (a first chunk's spool, renamed
        # over the upload's file, is locked too before it takes the name).
        self._locks = {}

    def path(self, key):
        return self.directory / key

    def location(self, key):
        return str(self.path(key))

    def owns(self, layout):
        return layout is None

    def create(self, max_size):
        key = uuid.uuid4().hex
        self.create_file(key)
        return key, None

    def create_file(self, key):
        """An empty, durable file named ``key`` (also the lock of an S3 upload on
        SQLite: ``segments.S3UploadStore``)."""
        path = self.path(key)
        with open(path, "xb") as created:
            os.fsync(created.fileno())
        fsync_dir(self.directory)

    def lock(self, key):
        # A second writer gets 409 at once rather than waiting behind a chunk that may
        # take minutes.
        try:
            fd = os.open(self.path(key), os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UploadBusy(key) from None
        except BaseException:
            # Any other refusal (ENOLCK, …): nobody else would ever close it.
            os.close(fd)
            raise
        lock = FileLock(fd, lambda: self._locks.pop(key, None))
        self._locks[key] = lock
        return lock

    def append(self, key, layout, offset, chunks):
        if isinstance(chunks, SpooledBody):
            if offset == 0 and self._take_spool(key, chunks):
                return
            self._copy_spooled(key, offset, chunks)
            return
        flushed = written = 0
        with open(self.path(key), "r+b", buffering=0) as out:
            fd = out.fileno()
            # Bytes past the committed offset are a failed request's: cut them off.
            os.ftruncate(fd, offset)
            out.seek(offset)
            try:
                for chunk in chunks:
                    write_all(out, chunk)
                    written += len(chunk)
                    # The disk starts on the chunk while it still arrives, so the fsync
                    # below finds little left to write (as the storage manager does).
                    if written - flushed >= WRITEBACK_EVERY:
                        linux_io.start_writeback(fd, offset + flushed, written - flushed)
                        flushed = written
                # The offset is reported only for bytes that are on the disk.
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, offset)
                raise

    def _take_spool(self, key, body):
        """A first chunk that is a whole spool file becomes the upload's file: renamed
        over the empty one, never copied. The new file is locked before it takes the
        name, so a request that opens the name meanwhile finds it busy, as it would have
        found the old one. False when this process does not hold the upload's lock, or
        the spool cannot be linked: the chunk is copied then."""
        lock = self._locks.get(key)
        if lock is None or not body.linkable:
            return False
        temporary = self.directory / f".{key}.{uuid.uuid4().hex}"
        if not body.link(temporary):
            return False
        try:
            fd = os.open(temporary, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                os.close(fd)
                raise
            lock.also(fd)
            os.rename(temporary, self.path(key))
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        fsync_dir(self.directory)
        return True

    def _copy_spooled(self, key, offset, body):
        with open(self.path(key), "r+b", buffering=0) as out:
            fd = out.fileno()
            os.ftruncate(fd, offset)
            try:
                body.copy_to(fd, offset)
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, offset)
                raise

    def read(self, key, layout, length):
        path, remaining = self.path(key), length
        with open(path, "rb", buffering=0) as source:
            while remaining > 0:
                chunk = source.read(min(READ, remaining))
                if not chunk:
                    raise OSError(errno.EIO, "the upload is shorter than its committed "
                                  "offset", str(path))
                remaining -= len(chunk)
                yield chunk

    def finish(self, manager, key, layout, length, md5, sha256):
        return manager.adopt(self._second_name(manager, self.path(key)), length, md5,
                             sha256)

    @staticmethod
    def _second_name(manager, path):
        """A hard link to the partial file, in staging, for the storage manager to move
        into place at commit; the partial file's own name goes only after the commit.

        Moving the partial file itself would leave, after a crash between that move (the
        storage manager's vote) and the database commit, an unfinished upload whose file
        is gone: the client could never finish it. With a second name the upload stays
        whole (it resumes from its committed offset) and the crash leaves an orphan
        archive file, which ``collector purge`` removes. Where hard links are refused, the
        file itself is moved, as before.
        """
        link = manager.backend.staging_file()
        try:
            os.link(path, link)
        except OSError:
            return path
        # After an abort, or a failed commit (the manager has moved the name back), the
        # second name goes; after a commit it has become the archive's.
        manager.on_failure(lambda: link.unlink(missing_ok=True))
        return link

    def remove(self, key):
        self.path(key).unlink(missing_ok=True)

    def keys(self, older_than=0.0):
        limit = time.time() - older_than
        for child in self.directory.iterdir():
            try:
                if child.is_file() and child.stat().st_mtime <= limit:
                    yield child.name
            except FileNotFoundError:  # removed meanwhile
                continue


class UploadStores:
    """The store new uploads go to (``new``), and the store of each existing upload,
    found by the layout its row records: an upload begun on the local disk keeps its
    file when the server moves to S3, and finishes there; one kept in segments of an
    object store the server no longer uses has none (``of`` answers None)."""

    def __init__(self, new, *others):
        self.new = new
        self.all = (new, *others)

    def of(self, layout):
        for store in self.all:
            if store.owns(layout):
                return store
        return None
