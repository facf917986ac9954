"""The storage manager: a transaction-aware file store for archive bytes.

Bytes are streamed into a staging file under ``DATA_DIR/tmp`` (same filesystem as the
archives), hashed on the way. The manager is a ``transaction`` data manager: at vote
time, before the database commits, each staged file is fsynced and renamed into place;
if the database then fails, ``tpc_abort`` takes it away again; on abort staging files are
removed. Deletions run after a successful commit only. Hence a row never points to a
missing file; a crash can at worst leave an orphan, which ``collector purge`` removes.
"""

import concurrent.futures
import hashlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from collector.archives.storage import kernel

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


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


class LocalArchiveStorage:
    """Archives on the local filesystem: ``archives/<key[:2]>/<key>``."""

    def __init__(self, data_dir):
        self.root = Path(data_dir)
        self.archives = self.root / "archives"
        self.staging = self.root / "tmp"
        self.uploads = self.root / "uploads"
        # Derived data of an archive (the gzip seek points of its member index).
        self.indexes = self.root / "index"
        for path in (self.archives, self.staging, self.uploads, self.indexes):
            path.mkdir(parents=True, exist_ok=True)

    def path(self, key):
        return self.archives / key[:2] / key

    def new_staging(self):
        key = uuid.uuid4().hex
        return StagedFile(key, self.staging / f"{key}.part")

    def publish(self, staged):
        target = self.path(staged.key)
        target.parent.mkdir(exist_ok=True)
        os.rename(staged.path, target)
        _fsync_dir(target.parent)

    def unpublish(self, staged):
        if staged.adopted:
            os.rename(self.path(staged.key), staged.path)
        else:
            self.path(staged.key).unlink(missing_ok=True)

    # --- partial tus uploads: ``uploads/<key>`` ---

    def upload_path(self, key):
        return self.uploads / key

    def upload_keys(self):
        for child in self.uploads.iterdir():
            if child.is_file():
                yield child.name

    def index_path(self, key, suffix):
        return self.indexes / f"{key}.{suffix}"

    def delete(self, key):
        self.path(key).unlink(missing_ok=True)
        # What was derived from the archive goes with it.
        for derived in self.indexes.glob(f"{key}.*"):
            derived.unlink(missing_ok=True)

    def open(self, key):
        return open(self.path(key), "rb")

    def exists(self, key):
        return self.path(key).is_file()

    def keys(self):
        for child in self.archives.glob("??/*"):
            if child.is_file():
                yield child.name

    def usage(self):
        total, used, free = shutil.disk_usage(self.archives)
        return {"total": total, "used": used, "free": free}

    def stale_staging(self, older_than):
        limit = time.time() - older_than
        for child in self.staging.iterdir():
            if child.is_file() and child.stat().st_mtime <= limit:
                yield child

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


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# md5 and sha256 both release the GIL on large buffers: hash md5 on a helper thread
# while this thread runs sha256 and writes, so two cores share the work.
_hash_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="hash")


class TooLarge(Exception):
    pass


# Start writing to disk every this many bytes, instead of all at the final fsync.
WRITEBACK_EVERY = 16 * 1024 * 1024


def write_all(out, data):
    """Write all of ``data`` to the unbuffered file ``out``.

    A raw write may be short: on a nearly full disk the kernel writes what fits and says
    how much, and only the next write fails with ENOSPC. Ignoring the count loses the
    rest of the chunk silently (hashed and counted, but not on disk).
    """
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


def write_stream(staged, chunks, max_size):
    """Write an iterable of byte chunks to the staging file, hashing and counting."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    pending = None
    flushed = 0
    with open(staged.path, "wb", buffering=0) as out:
        fd = out.fileno()
        for chunk in chunks:
            if not chunk:
                continue
            staged.size += len(chunk)
            if staged.size > max_size:
                raise TooLarge(staged.size)
            if pending is not None:
                pending.result()
            pending = _hash_pool.submit(md5.update, chunk)
            sha256.update(chunk)
            write_all(out, chunk)
            if staged.size - flushed >= WRITEBACK_EVERY:
                kernel.start_writeback(fd, flushed, staged.size - flushed)
                flushed = staged.size
        if pending is not None:
            pending.result()
        os.fsync(fd)
    staged.md5, staged.sha256 = md5.hexdigest(), sha256.hexdigest()
    return staged


class StorageManager:
    """Per-request view of the store, joined to the request's transaction."""

    transaction_manager = None

    def __init__(self, backend, transaction_manager, metrics=None):
        self.backend = backend
        self.transaction_manager = transaction_manager
        # collector.metrics.Metrics when /metrics is on: told of every archive stored.
        self.metrics = metrics
        self._staged = []
        self._published = []
        self._joined = False

    # --- what services call ---

    def stage(self, chunks, max_size):
        """Stream bytes to staging; they become permanent only if the transaction commits."""
        self._join()
        staged = self.backend.new_staging()
        self._staged.append(staged)
        write_stream(staged, chunks, max_size)
        return staged

    def adopt(self, path, size, md5, sha256):
        """Take an already written, fsynced file (a finished tus upload) as an archive.

        It is renamed into place at commit like a staged file, never copied; if the
        transaction aborts it stays where it was (after a failed vote it is moved back).
        """
        self._join()
        staged = StagedFile(uuid.uuid4().hex, Path(path), adopted=True)
        staged.size, staged.md5, staged.sha256 = size, md5, sha256
        self._staged.append(staged)
        return staged

    def new_upload_file(self):
        """An empty file for a new tus upload, removed again if the transaction fails."""
        key = uuid.uuid4().hex
        path = self.backend.upload_path(key)
        with open(path, "xb") as created:
            os.fsync(created.fileno())
        _fsync_dir(path.parent)

        def remove(*_):
            path.unlink(missing_ok=True)

        txn = self.transaction_manager.get()
        txn.addAfterAbortHook(remove)
        txn.addAfterCommitHook(lambda success: None if success else remove())
        return key, path

    def delete_after_commit(self, key):
        self._after_commit(self.backend.delete, key)

    def delete_upload_after_commit(self, key, abandoned=None):
        """Remove a partial upload's file once the transaction that forgot it committed.
        ``abandoned`` (the bytes it had) when the upload ended without becoming an archive:
        counted as a ``terminated`` upload then."""
        def remove(k):
            self.backend.upload_path(k).unlink(missing_ok=True)
            if abandoned is not None and self.metrics is not None:
                self.metrics.upload_ended("terminated", abandoned)

        self._after_commit(remove, key)

    def _after_commit(self, remove, key):
        def _delete(success):
            if success:
                try:
                    remove(key)
                except OSError:  # an orphan at worst; purge will find it
                    log.exception("could not delete file %s", key)

        self.transaction_manager.get().addAfterCommitHook(_delete)

    def open(self, key):
        return self.backend.open(key)

    # --- IDataManager ---

    def _join(self):
        if not self._joined:
            self.transaction_manager.get().join(self)
            self._joined = True

    def sortKey(self):
        # Before zope.sqlalchemy's "~sqlalchemy:…": files are in place before the DB commits.
        return "collector-storage"

    def abort(self, transaction):
        self._discard()

    def tpc_begin(self, transaction):
        pass

    def commit(self, transaction):
        pass

    def tpc_vote(self, transaction):
        for staged in self._staged:
            self.backend.publish(staged)
            self._published.append(staged)
        self._staged = []

    def tpc_finish(self, transaction):
        # Committed: each published file is an archive now, whichever protocol sent it.
        if self.metrics is not None:
            for staged in self._published:
                self.metrics.upload_ended("stored", staged.size)
        self._published = []
        self._joined = False

    def tpc_abort(self, transaction):
        for staged in self._published:
            self.backend.unpublish(staged)
        self._published = []
        self._discard()

    def _discard(self):
        for staged in self._staged:
            if not staged.adopted:
                staged.path.unlink(missing_ok=True)
        self._staged = []
        self._joined = False


def includeme(config):
    settings = config.get_settings()
    backend = LocalArchiveStorage(settings["data_dir"])
    config.registry["archive_storage"] = backend

    def storage(request):
        return StorageManager(backend, request.tm, request.registry.get("metrics"))

    config.add_request_method(storage, reify=True)
