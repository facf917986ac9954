"""Streaming bytes into a store: hashing (sha256; md5 of small archives), counting, the
size limit, and full writes to a local file. Shared by every backend."""

import hashlib
import os

from collector.archives.storage import linux_io

CHUNK = 1024 * 1024

# sha256 is the archive's integrity check and is computed on the way in. md5 (kept for the
# original's API field, ~1.6 s/GiB here) is computed on the way in only for archives up to
# this size, where it costs a few milliseconds; a bigger archive's md5 is computed in the
# background after the commit (collector.archives.checksums) and is null until then.
MD5_INLINE_MAX = 4 * 1024 * 1024

# Start writing to disk every this many bytes, instead of all at the final fsync.
WRITEBACK_EVERY = 16 * 1024 * 1024


class TooLarge(Exception):
    pass


class StorageUnavailable(OSError):
    """The archive store (an object store) failed or refused a request: answered 503
    with ``Retry-After``, not 507 — it is not full, it is not answering right now."""


def write_all(out, data):
    """Write all of ``data`` to the unbuffered file ``out``.

    A raw write may be short: on a nearly full disk the kernel writes what fits and says
    how much, and only the next write fails with ENOSPC. Ignoring the count loses the
    rest of the chunk silently (hashed and counted, but not on disk).
    """
    view = memoryview(data)
    while view:
        view = view[out.write(view):]


class SmallMd5:
    """The md5 of bytes that total at most ``MD5_INLINE_MAX``; ``hexdigest()`` is None once
    they are more (or from the start, when the caller knows they will be: ``expected``)."""

    def __init__(self, expected=None):
        self.size = 0
        self.state = hashlib.md5() if expected is None or expected <= MD5_INLINE_MAX else None

    def update(self, chunk):
        if self.state is None:
            return
        self.size += len(chunk)
        if self.size > MD5_INLINE_MAX:
            self.state = None
        else:
            self.state.update(chunk)

    def copy(self):
        clone = SmallMd5.__new__(SmallMd5)
        clone.size, clone.state = self.size, None if self.state is None else self.state.copy()
        return clone

    def hexdigest(self):
        return None if self.state is None else self.state.hexdigest()


def hashed(staged, chunks, max_size, expected=None):
    """Yield the non-empty ``chunks`` while counting them into ``staged.size`` (refusing
    past ``max_size``) and hashing them; ``staged.sha256`` (and ``staged.md5`` for a small
    archive, ``SmallMd5``) are set at the end. ``expected``: the size announced, if any."""
    md5, sha256 = SmallMd5(expected), hashlib.sha256()
    for chunk in chunks:
        if not chunk:
            continue
        staged.size += len(chunk)
        if staged.size > max_size:
            raise TooLarge(staged.size)
        md5.update(chunk)
        sha256.update(chunk)
        yield chunk
    staged.md5, staged.sha256 = md5.hexdigest(), sha256.hexdigest()


def write_stream(staged, chunks, max_size):
    """Write an iterable of byte chunks to the staging file, hashing and counting."""
    flushed = 0
    with open(staged.path, "wb", buffering=0) as out:
        fd = out.fileno()
        for chunk in hashed(staged, chunks, max_size):
            write_all(out, chunk)
            if staged.size - flushed >= WRITEBACK_EVERY:
                linux_io.start_writeback(fd, flushed, staged.size - flushed)
                flushed = staged.size
        os.fsync(fd)
    return staged


def file_chunks(path, size=None):
    """The bytes of the local file ``path`` (its first ``size`` bytes), CHUNK at a time."""
    left = size
    with open(path, "rb") as source:
        while left is None or left > 0:
            chunk = source.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
