"""The running sha256 (and md5 while the upload is small) of each plain upload, kept
between its chunks.

hashlib objects cannot be pickled, so the running hashes live in a process-local cache
keyed by upload id *and* offset. A request that finds no entry for the offset it starts
from (another process or instance wrote the last chunk, the process restarted, or the
last commit failed) hashes the upload's stored bytes again from their start
(``IUploadStore.read``). docs/architecture.md gives the measured cost.
"""

import collections
import hashlib
import threading

from collector.archives.storage.streams import SmallMd5


class Hashes:
    """sha256 of the bytes so far, and their md5 while they are few (``SmallMd5``: a bigger
    archive's md5 is computed after its commit, off the upload's path)."""

    def __init__(self, sha256=None, md5=None):
        self.sha256 = sha256 or hashlib.sha256()
        self.md5 = md5 or SmallMd5()

    def update(self, chunk):
        self.md5.update(chunk)
        self.sha256.update(chunk)

    def copy(self):
        return Hashes(self.sha256.copy(), self.md5.copy())

    @classmethod
    def of_chunks(cls, chunks):
        """Hash a stream of chunks (an upload's stored bytes, read back)."""
        hashes = cls()
        for chunk in chunks:
            hashes.update(chunk)
        return hashes


class HashCache:
    """Process-local: upload id → (offset, Hashes). An entry is used only for the exact
    offset it was saved at, so one written by a failed request or by another process
    is never trusted."""

    def __init__(self, size=512):
        self.size = size
        self._entries = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, upload_id, offset):
        with self._lock:
            entry = self._entries.pop(upload_id, None)
        if entry is not None and entry[0] == offset:
            return entry[1]
        return None

    def peek(self, upload_id, offset):
        """A copy of the hashes saved for ``offset``, leaving the entry in place (the
        request parser hashes a chunk before the app has checked anything)."""
        with self._lock:
            entry = self._entries.get(upload_id)
            if entry is None or entry[0] != offset:
                return None
            return entry[1].copy()

    def put(self, upload_id, offset, hashes):
        with self._lock:
            self._entries[upload_id] = (offset, hashes)
            self._entries.move_to_end(upload_id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, upload_id):
        with self._lock:
            self._entries.pop(upload_id, None)

    def clear(self):
        with self._lock:
            self._entries.clear()


HASHES = HashCache()


def running_hashes(store, upload):
    """The hashes of ``upload``'s first ``offset`` bytes: from the cache, else read back
    from ``store``."""
    return HASHES.take(upload.id, upload.offset) or Hashes.of_chunks(
        store.read(upload.storage_key, upload.segment_size, upload.offset))


def remember_after_commit(storage, upload_id, offset, hashes):
    """Cache the running hashes only once ``offset`` is committed. With several
    processes or instances an entry saved before a commit that then failed could later
    meet the same offset reached elsewhere with other bytes; after the commit the bytes
    below ``offset`` never change, so an entry for it is right whoever asks."""
    def remember(success):
        if success:
            HASHES.put(upload_id, offset, hashes)

    storage.transaction_manager.get().addAfterCommitHook(remember)


def forget_after_commit(storage, upload_id):
    storage.transaction_manager.get().addAfterCommitHook(
        lambda success: HASHES.forget(upload_id) if success else None)
