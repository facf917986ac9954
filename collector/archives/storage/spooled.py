"""``SpooledBody``: bytes already on the archives' disk, in a request body's spool file,
with their hashes known (the server hashed them as they arrived,
``archives.uploads.receiving``).

A store takes such a body without reading it through Python: the whole spool is given a
name (``link``: ``linkat`` of the unnamed file, after an fsync) when it is exactly the
bytes to keep, else the range is copied inside the kernel (``copy_to``:
``copy_file_range``), with the part of the spool already copied freed behind it. Any
other store simply iterates it (``pread`` pieces), as it would a request body.
"""

import errno
import os

from collector.archives.storage import linux_io
from collector.archives.storage.streams import CHUNK

# copy_file_range in steps of this many bytes; the copy's writeback is started and the
# spool behind it freed after each (an 8 MiB tus chunk then starts its writeback
# halfway, instead of leaving all of it to the fsync).
COPY_STEP = 4 * 1024 * 1024
# Where copy_file_range cannot work (another filesystem on an old kernel, a special file):
# the bytes are copied through Python instead.
NO_COPY_RANGE = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


class SpooledBody:
    """``[start, start + size)`` of the spool file ``fd`` (kept open by its request), with
    its ``sha256`` and ``md5`` (None past ``MD5_INLINE_MAX``). ``linkable``: the file is
    unnamed and may be given a name. For a tus chunk: ``hashes`` (its upload's running
    hashes after it), ``base`` ((upload id, offset) they continue from) and ``checksum``
    (the digest of the chunk with its ``Upload-Checksum`` algorithm). ``filename``: the
    name the body itself gives (a multipart part's)."""

    def __init__(self, fd, start, size, sha256=None, md5=None, linkable=False, hashes=None,
                 base=None, checksum=None, filename=None):
        self.filename = filename
        self.fd, self.start, self.size = fd, start, size
        self.sha256, self.md5 = sha256, md5
        # The whole file, nothing more: it can become the stored file as it is.
        self.linkable = linkable and start == 0 and os.fstat(fd).st_size == size
        self.hashes, self.base, self.checksum = hashes, base, checksum

    def __iter__(self):
        position, end = self.start, self.start + self.size
        while position < end:
            data = os.pread(self.fd, min(CHUNK, end - position), position)
            if not data:
                raise OSError(errno.EIO, "the request body's spool is shorter than the body")
            position += len(data)
            yield data

    def link(self, path):
        """Give the spool the name ``path`` (durable: its bytes are fsynced first, the
        directory is the caller's to fsync). False where the system refuses (no
        ``/proc``, another filesystem): the caller copies instead."""
        if not self.linkable:
            return False
        os.fsync(self.fd)
        try:
            # linkat(/proc/self/fd, "N", …, AT_SYMLINK_FOLLOW): os.link follows the
            # magic link only when given a directory descriptor (else it calls link(2),
            # which would link the symlink itself: EXDEV).
            proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(str(self.fd), path, src_dir_fd=proc, follow_symlinks=True)
            finally:
                os.close(proc)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise
            return False
        return True

    def copy_to(self, out, offset):
        """Copy the bytes to the descriptor ``out`` at ``offset``, inside the kernel,
        starting its writeback as it goes (the caller fsyncs); the spool is freed behind
        the copy, so the disk never holds much of the body twice."""
        position, end, target = self.start, self.start + self.size, offset
        flushed, freed = offset, self.start
        while position < end:
            step = min(COPY_STEP, end - position)
            done = 0
            while done < step:
                try:
                    copied = os.copy_file_range(self.fd, out, step - done, position + done,
                                                target + done)
                except OSError as exc:
                    if exc.errno not in NO_COPY_RANGE:
                        raise
                    copied = self._copy_slowly(out, position + done, target + done,
                                               step - done)
                if copied == 0:
                    raise OSError(errno.EIO, "the request body's spool is shorter than "
                                  "the body")
                done += copied
            position, target = position + step, target + step
            linux_io.start_writeback(out, flushed, target - flushed)
            flushed = target
            # Freed whole pages only: the rest goes with the spool.
            free_end = position - position % linux_io.PAGE
            if free_end > freed:
                linux_io.punch_hole(self.fd, freed, free_end - freed)
                freed = free_end

    def _copy_slowly(self, out, source, target, length):
        data = os.pread(self.fd, min(CHUNK, length), source)
        if not data:
            return 0
        view = memoryview(data)
        while view:
            written = os.pwrite(out, view, target)
            target += written
            view = view[written:]
        return len(data)
