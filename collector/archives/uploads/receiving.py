"""An upload's body hashed while it arrives, in a spool file that can become the archive.

waitress reads a whole request body before it calls the app. For a body big enough to be
spooled to a file (over ``inbuf_overflow``), ``collector serve``'s request parser
(``spool.py``) gives it a ``SpoolBuffer`` instead of waitress's own buffer:

* the bytes go to an unnamed file in ``DATA_DIR/tmp`` (``O_TMPFILE``: a crash leaves
  nothing behind), on the archives' filesystem, that can later be given a name
  (``linkat``) — so a raw body becomes the archive without being copied;
* a ``Follower`` thread per body hashes the bytes as they arrive, in order, as a ``Plan``
  for that kind of request says (a raw body; the file part of a ``multipart/form-data``
  body, whose place in the spool it notes; a tus chunk, continuing its upload's running
  hashes and checking its ``Upload-Checksum``). waitress's I/O thread only writes the
  bytes and hands them over: it never waits for a hash. The follower takes the bytes
  from a queue while it keeps up, and reads them back from the spool (page cache) when it
  falls behind, so memory stays bounded whatever the speeds.

When the app is called the digest is ready or nearly so (``SpoolBuffer.digest``). The app
uses it only after its own checks (token, ACL, the upload's offset under its lock); a
request served without this server (webtest, another WSGI server) has no spool and the
app hashes the body as it copies it, as before.
"""

import collections
import errno
import hashlib
import logging
import os
import tempfile
import threading

from collector.archives.storage import linux_io
from collector.archives.storage.spooled import SpooledBody
from collector.archives.storage.streams import WRITEBACK_EVERY, SmallMd5
from collector.archives.uploads.multipart import FilePart, MultipartError, boundary_of
from collector.archives.uploads.tus.hashes import HASHES, Hashes
from collector.archives.uploads.tus.headers import CHECKSUMS, CONTENT_TYPE
from collector.errors import BadRequest, InsufficientStorage

log = logging.getLogger(__name__)

# The environ key of a request's SpoolBuffer (set by spool.py's task).
ENVIRON_KEY = "collector.spool"
# The environ key of the event set when a stop's deadline cuts the requests in flight
# (server.DrainAware): their bodies then read as ended.
CUT_KEY = "collector.cut"
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Bytes handed over in memory before the follower reads the rest back from the spool.
QUEUE_MAX = 2 * 1024 * 1024
# The follower's reads from the spool.
READ = 1024 * 1024
# How long the app waits for a digest once the body is complete (it is hashing what is
# left at ~1.5 GB/s); past it, the app hashes the body itself.
WAIT = 600.0


class Abandoned(Exception):
    """The body will never be complete (the client went away, the request was refused)."""


def open_spool(directory):
    """(descriptor, linkable): an unnamed file in ``directory``, which ``linkat`` can give a
    name (``O_TMPFILE`` without ``O_EXCL``); where that is not supported, a named file
    removed at once (never linkable: its bytes are copied)."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is not None:
        try:
            return os.open(directory, flag | os.O_RDWR | os.O_CLOEXEC, 0o600), True
        except OSError:
            pass  # a filesystem without O_TMPFILE: EOPNOTSUPP, EISDIR (old kernels) …
    fd, name = tempfile.mkstemp(dir=directory, prefix="spool-")
    os.unlink(name)
    return fd, False


class SpoolBuffer:
    """waitress's body buffer (``append``, ``getfile``, ``close``, ``len``) for a body
    spooled to a file from its first byte, followed by a ``Follower``."""

    closed = True  # until the file is open

    def __init__(self, directory, plan=None):
        self.fd, self.linkable = open_spool(directory)
        self.size = 0
        self.closed = False
        # What the app reads as wsgi.input (from the start; appends do not move it).
        self.file = open(self.fd, "rb", buffering=0, closefd=False)  # noqa: SIM115
        self.follower = Follower(self.fd, plan, directory) if plan is not None else None

    def __len__(self):
        return self.size

    def __bool__(self):
        return self.size > 0

    def append(self, data):
        view, offset = memoryview(data), self.size
        while view:
            written = os.pwrite(self.fd, view, offset)
            offset += written
            view = view[written:]
        self.size = offset
        if self.follower is not None:
            self.follower.feed(data)

    def getfile(self):
        return self.file

    def complete(self):
        """The whole body has arrived."""
        if self.follower is not None:
            self.follower.finish()

    def digest(self, timeout=WAIT):
        """The follower's ``Digest`` of the complete body, or None (no follower, the plan
        could not hash it, or it is not done in ``timeout``)."""
        if self.follower is None:
            return None
        return self.follower.wait(timeout)

    def __del__(self):
        # A request dropped half-received without being closed: the follower must not
        # wait for bytes that never come.
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.follower is not None:
            result = self.follower.abandon()
            if result is not None and result.fd is not None:
                os.close(result.fd)  # a file the plan wrote (a multipart body's part)
        self.file.close()
        os.close(self.fd)


class Follower:
    """A thread that reads a spool as it grows and runs a ``Plan`` over its bytes."""

    def __init__(self, fd, plan, directory):
        # Its own descriptor: the spool may be closed while it reads.
        self.fd = os.dup(fd)
        self.plan, self.directory = plan, directory
        self.files = []  # descriptors of files the plan made (closed unless handed over)
        self.cond = threading.Condition()
        self.queue = collections.deque()  # (offset, bytes), contiguous from its head
        self.queued = 0
        self.behind = False  # bytes were left out of the queue: read them from the file
        self.received = 0  # bytes in the spool
        self.position = 0  # bytes read by the plan
        self.freed = 0  # bytes at the spool's start freed (``free``)
        self.state = "open"  # "complete" once the body is whole, "abandoned" if never
        self.result = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="body-digest", daemon=True)
        self.thread.start()

    # --- waitress's I/O thread ---

    def feed(self, data):
        with self.cond:
            if not self.behind and self.queued + len(data) <= QUEUE_MAX:
                self.queue.append((self.received, data))
                self.queued += len(data)
            else:
                self.behind = True
            self.received += len(data)
            self.cond.notify()

    def finish(self):
        with self.cond:
            if self.state == "open":
                self.state = "complete"
            self.cond.notify()

    def abandon(self):
        """The body's request is over, whether the body was complete or not: the plan
        stops if it still runs; returns its result if it was published (the caller owns
        the files in it then)."""
        with self.cond:
            self.state = "abandoned"
            self.cond.notify()
            return self.result

    # --- the follower's thread ---

    def read(self, size=READ):
        """Up to ``size`` of the next bytes, waiting for them; b"" at the end of a complete
        body; ``Abandoned`` if it will never be complete."""
        with self.cond:
            while True:
                if self.state == "abandoned":
                    raise Abandoned
                if self.queue:
                    offset, data = self.queue[0]
                    if offset == self.position:
                        if len(data) <= size:
                            self.queue.popleft()
                            self.queued -= len(data)
                        else:
                            self.queue[0] = (offset + size, data[size:])
                            self.queued -= size
                            data = data[:size]
                        self.position += len(data)
                        return data
                    until = offset  # the bytes before the queue's head are in the file
                else:
                    until = self.received
                    if self.position == until:
                        self.behind = False  # caught up: the queue takes bytes again
                if self.position < until:
                    start, length = self.position, min(size, until - self.position)
                    break
                if self.state == "complete":
                    return b""
                self.cond.wait()
        data = os.pread(self.fd, length, start)
        if len(data) != length:  # never: those bytes are in the file
            raise OSError(f"spool read short: {len(data)} of {length} bytes at {start}")
        with self.cond:
            self.position += length
        return data

    def new_file(self):
        """A linkable file in the spool's directory, for the plan to write (closed with
        the follower unless it is handed over in the result)."""
        fd, linkable = open_spool(self.directory)
        self.files.append(fd)
        return fd, linkable

    def _run(self):
        result = None
        try:
            result = self.plan.run(self)
        except Abandoned:
            pass
        except Exception:  # noqa: BLE001 - the app hashes the body itself then
            log.exception("hashing a request body as it arrived failed")
        finally:
            with self.cond:
                # Published only while the request is not over; the files it names are
                # then the SpoolBuffer's to close.
                if result is not None and self.state != "abandoned":
                    self.result = result
                    if result.fd is not None:
                        self.files.remove(result.fd)
            for fd in [self.fd, *self.files]:
                os.close(fd)
            self.done.set()

    def free(self, end):
        """Free the spool's pages before ``end``: their bytes were copied elsewhere and
        must never be written back (whoever reads the spool later finds zeros there)."""
        end -= end % linux_io.PAGE
        if end > self.freed:
            linux_io.punch_hole(self.fd, self.freed, end - self.freed)
            self.freed = end

    def writeback(self, start, end):
        """Start writing ``[start, end)`` of the spool to the disk (a body that will be
        linked into place: its final fsync then finds little left to do)."""
        linux_io.start_writeback(self.fd, start, end - start)

    @staticmethod
    def writeback_file(fd, start, end):
        linux_io.start_writeback(fd, start, end - start)

    def wait(self, timeout):
        if not self.done.wait(timeout):
            log.warning("a request body's digest was not ready after %g s", timeout)
            return None
        return self.result


class Digest:
    """What a plan found: the bytes ``[start, start + size)`` of the spool (or of the
    file ``fd``, when the plan wrote the content to a file of its own) are the content
    (the whole raw body, or a multipart body's file part), with their sha256 and md5
    (None past ``MD5_INLINE_MAX``); for a tus chunk, ``hashes`` are its upload's running
    hashes after it (from ``base``) and ``checksum`` its ``Upload-Checksum``."""

    def __init__(self, kind, start, size, sha256=None, md5=None, filename=None,
                 hashes=None, base=None, checksum=None, fd=None, linkable=False,
                 error=None):
        self.kind, self.start, self.size = kind, start, size
        # The content is in a file of its own (``fd``), not in the spool.
        self.fd, self.linkable = fd, linkable
        # The answer refusing the body, when the plan found out why after freeing part
        # of it (the app could no longer read it whole).
        self.error = error
        self.sha256, self.md5 = sha256, md5
        self.filename = filename
        self.hashes, self.base, self.checksum = hashes, base, checksum


class Plan:
    """What to compute over a body. ``writeback``: the spool's writeback is started as
    the bytes arrive (a tus upload's first chunk, which becomes the upload's file)."""

    writeback = False

    def __init__(self, length=None):
        self.length = length  # Content-Length; None for a chunked body

    def hash_all(self, body, update):
        """Feed every byte of the body to ``update``; returns the count. With
        ``writeback``, the spool's writeback is started as the bytes arrive, however far
        behind the hashing is (so the fsync finds little left)."""
        flushed = total = 0
        while chunk := body.read():
            update(chunk)
            total += len(chunk)
            if self.writeback and body.received - flushed >= WRITEBACK_EVERY:
                arrived = body.received
                body.writeback(flushed, arrived)
                flushed = arrived
        return total


class RawPlan(Plan):
    # Its writeback is left to the kernel and the final fsync: started by the follower on
    # the file waitress is still appending to, it cost a 3 GiB upload more CPU than it
    # saved (bench/big_upload.py, 3 pairs: 452 -> 626 MB/s at 3 GiB without it, 875 -> 728
    # at 1 GiB; docs/performance.md).
    writeback = False

    def run(self, body):
        sha256, md5 = hashlib.sha256(), SmallMd5(self.length)

        def update(chunk):
            sha256.update(chunk)
            md5.update(chunk)

        size = self.hash_all(body, update)
        return Digest("raw", 0, size, sha256.hexdigest(), md5.hexdigest())


class _Counted:
    """A body as a stream that counts what was read from it (FilePart reads in steps)."""

    def __init__(self, body):
        self.body, self.consumed = body, 0

    def read(self, size):
        data = self.body.read(size)
        self.consumed += len(data)
        return data


class MultipartPlan(Plan):
    """The ``file`` field of a ``multipart/form-data`` body: its bytes are hashed and
    written to a file of their own as they arrive (a linkable one, its writeback started
    every 16 MiB, so it becomes the archive as it is), and the spool behind them is
    freed (never written back: the disk gets the file part once)."""

    def __init__(self, length, boundary):
        super().__init__(length)
        self.boundary = boundary

    def run(self, body):
        stream = _Counted(body)
        try:
            part = FilePart(stream, self.boundary, "file")
        except MultipartError:
            return None  # nothing freed yet: the app reads the body itself, answers 400
        fd, linkable = body.new_file()
        sha256, md5, size, flushed = hashlib.sha256(), SmallMd5(), 0, 0
        try:
            for piece in part:
                sha256.update(piece)
                md5.update(piece)
                view = memoryview(piece)
                while view:
                    written = os.pwrite(fd, view, size)
                    size += written
                    view = view[written:]
                if size - flushed >= WRITEBACK_EVERY:
                    body.writeback_file(fd, flushed, size)
                    flushed = size
                    body.free(stream.consumed - len(part.buffer))
        except MultipartError as exc:
            return Digest("multipart", 0, size, error=BadRequest(str(exc)))
        except OSError as exc:
            if exc.errno not in NO_SPACE:
                raise
            return Digest("multipart", 0, size, error=InsufficientStorage(
                f"could not store the archive: {exc.strerror}"))
        body.free(stream.consumed)
        return Digest("multipart", 0, size, sha256.hexdigest(), md5.hexdigest(),
                      part.filename, fd=fd, linkable=linkable)


class TusPlan(Plan):
    """A tus chunk at ``offset`` of upload ``upload_id`` (None: a creation's body, which
    starts a new upload): its running hashes continue from the ones the process keeps for
    that offset (``HASHES``, only ever saved for committed offsets); with none there, the
    app rebuilds them from the stored bytes. ``checksum``: the algorithm of the chunk's
    ``Upload-Checksum``."""

    def __init__(self, length, upload_id, offset, checksum):
        super().__init__(length)
        self.upload_id, self.offset, self.checksum = upload_id, offset, checksum
        self.writeback = offset == 0

    def run(self, body):
        hashes = None
        if self.offset == 0:
            hashes = Hashes()
        elif self.upload_id is not None:
            hashes = HASHES.peek(self.upload_id, self.offset)
        chunk_hash = CHECKSUMS[self.checksum]() if self.checksum else None

        def update(chunk):
            if hashes is not None:
                hashes.update(chunk)
            if chunk_hash is not None:
                chunk_hash.update(chunk)

        size = self.hash_all(body, update)
        return Digest("tus", 0, size, hashes=hashes, base=(self.upload_id, self.offset),
                      checksum=chunk_hash.digest() if chunk_hash is not None else None)


def plan_for(path, headers, length):
    """The plan for a body about to be spooled (``headers`` as waitress keeps them:
    upper case, ``_`` for ``-``), or None to leave it to the app."""
    content_type = headers.get("CONTENT_TYPE", "")
    media = content_type.partition(";")[0].strip().lower()
    if media == CONTENT_TYPE:
        return _tus_plan(path, headers, length)
    if media == "multipart/form-data":
        try:
            return MultipartPlan(length, boundary_of(content_type))
        except MultipartError:
            return None
    return RawPlan(length)


def _tus_plan(path, headers, length):
    checksum = headers.get("UPLOAD_CHECKSUM", "").strip().partition(" ")[0]
    if checksum and checksum not in CHECKSUMS:
        return None  # refused by the app (400)
    segments = [segment for segment in path.split("/") if segment]
    if segments and segments[-1] == "uploads":
        return TusPlan(length, None, 0, checksum)  # creation with upload
    offset = headers.get("UPLOAD_OFFSET", "").strip()
    if not segments or not offset.isdigit() or not offset.isascii():
        return None
    return TusPlan(length, segments[-1], int(offset), checksum)


def check_not_cut(request):
    """Refuse, as a body that ended early is refused, a request that a stop's deadline
    cut while the app was storing its spooled body (it reads nothing more from the
    client that would fail): its transaction then aborts, and what was staged goes."""
    cut = request.environ.get(CUT_KEY)
    if cut is not None and cut.is_set():
        raise BadRequest("request body ended early (client gone?)", reason="client_gone")


def spooled_body(request, kind):
    """The request's body as a ``SpooledBody`` with its digest, when ``collector serve``
    spooled it and hashed it as ``kind`` ("raw", "multipart", "tus"); else None, and the
    app reads and hashes the body itself. A multipart body found malformed once part of
    its spool was freed (400), or whose file part found the disk full (507), is refused
    here."""
    spool = request.environ.get(ENVIRON_KEY)
    if spool is None or spool.closed:
        return None
    digest = spool.digest()
    if digest is None or digest.kind != kind:
        return None
    if digest.error is not None:
        raise digest.error
    if digest.fd is not None:
        return SpooledBody(digest.fd, 0, digest.size, digest.sha256, digest.md5,
                           digest.linkable, filename=digest.filename)
    if digest.size != spool.size:
        return None
    return SpooledBody(spool.fd, digest.start, digest.size, digest.sha256, digest.md5,
                       spool.linkable, digest.hashes, digest.base, digest.checksum)
