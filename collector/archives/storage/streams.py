"""Streaming bytes into a store: hashing (sha256 here, md5 on a helper thread), counting,
the size limit, and full writes to a local file. Shared by every backend."""

import concurrent.futures
import hashlib
import os

from collector.archives.storage import linux_io

CHUNK = 1024 * 1024

# md5 and sha256 both release the GIL on large buffers: hash md5 on a helper thread
# while this thread runs sha256 and writes, so two cores share the work.
HASH_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="hash")

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


def hashed(staged, chunks, max_size):
    """Yield the non-empty ``chunks`` while counting them into ``staged.size`` (refusing
    past ``max_size``) and hashing them; ``staged.md5``/``sha256`` are set at the end.
    The md5 of a chunk runs on a helper thread while the caller stores it."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    pending = None
    for chunk in chunks:
        if not chunk:
            continue
        staged.size += len(chunk)
        if staged.size > max_size:
            raise TooLarge(staged.size)
        if pending is not None:
            pending.result()
        pending = HASH_POOL.submit(md5.update, chunk)
        sha256.update(chunk)
        yield chunk
    if pending is not None:
        pending.result()
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
