"""tus 1.0.0 resumable uploads: the rules behind ``/api/v1/uploads/``.

An upload is a ``TusUpload`` row and a file ``DATA_DIR/uploads/<key>``. Each chunk is
appended to the file, hashed on the way, fsynced, and only then is the new offset written
(committed by the request's transaction). The file may therefore hold bytes past the
committed offset after a crash; they are cut off before the next chunk is appended.

When the last byte arrives a second name (a hard link) of the file is adopted by the
storage manager (renamed into place at commit, never copied) and the archive row is added
in the same transaction; the partial file's own name goes after the commit, so a crash
at any point leaves either the whole upload or the archive (see ``_second_name``).

Hash state: hashlib objects cannot be pickled, so the running sha256/md5 live in a
process-local cache keyed by upload id *and* offset. A request that finds no entry for the
offset it starts from (another process wrote the last chunk, the process restarted, or the
last commit failed) hashes the partial file again from its start. docs/architecture.md
gives the measured cost.

S3 (``upload.segment_size`` set): the bytes are segment objects in the bucket instead of
a local file, so any instance can take the next chunk (``_append_segments``); at the
last byte the object store assembles the archive from them (``StorageManager.assemble``);
the row lock (PostgreSQL) keeps two chunks of one upload apart across instances; a hash
cache miss re-reads the segments. docs/architecture.md, "tus on S3", has the design and
the measurements.

Attempts: a plain upload reserves one of the ticket's attempts when it is created; partial
uploads (``Upload-Concat: partial``) reserve none, and the final upload that joins them
spends one. Terminating or expiring an upload that holds an attempt gives it back.

What a ticket holds unfinished is bounded (``UPLOAD_UNFINISHED_MAX`` uploads,
``UPLOAD_UNFINISHED_MAX_BYTES`` bytes; ``_check_room``): partial uploads spend no
attempt, so without it one token could fill the disk with them, unseen by staff. The
count is taken under the ticket's row (``_lock_ticket``), so parallel requests, on any
instance, are counted one after another. Resolving or deleting the ticket removes them
(``remove_unfinished``).
"""

import base64
import binascii
import collections
import contextlib
import datetime as dt
import email.utils
import errno
import fcntl
import hashlib
import os
import re
import secrets
import threading
import time
import uuid

from sqlalchemy import delete, false, func, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm.exc import StaleDataError

from collector.archives import names
from collector.archives import services as archives
from collector.archives.models import TusUpload
from collector.archives.storage import WRITEBACK_EVERY, _hash_pool, kernel, write_all
from collector.audit.services import record
from collector.db import utcnow
from collector.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InsufficientStorage,
    Locked,
    PayloadTooLarge,
    ServiceUnavailable,
)
from collector.numbers import parse_natural
from collector.tickets import services as tickets
from collector.tickets.models import Ticket

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "creation-defer-length", "termination",
              "checksum", "expiration", "concatenation")
CHECKSUMS = {"sha1": hashlib.sha1, "md5": hashlib.md5, "sha256": hashlib.sha256}
CONTENT_TYPE = "application/offset+octet-stream"
READ = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class Gone(DomainError):
    status = 410


class PreconditionFailed(DomainError):
    status = 412


class UnsupportedMediaType(DomainError):
    status = 415


class ChecksumMismatch(DomainError):
    status = 460


# --- headers -----------------------------------------------------------------------------

def parse_length(value, name):
    """A non-negative integer header, or None when absent."""
    if value is None:
        return None
    number = parse_natural(value.strip(" \t"))
    if number is None:
        raise BadRequest(f"{name} must be a non-negative integer of ASCII digits")
    return number


def parse_metadata(header):
    """``key base64,key2 base64,key3`` → {key: str}; 400 when malformed."""
    header = (header or "").strip()
    if len(header) > 4096:
        raise BadRequest("Upload-Metadata is longer than 4096 characters")
    result = {}
    for pair in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = pair.partition(" ")
        # Keys are printable ASCII (tus 1.0); nothing else is stored or echoed in HEAD.
        if not key or not key.isascii() or not key.isprintable() or " " in value.strip() \
                or key in result:
            raise BadRequest(f"Upload-Metadata: malformed pair {pair[:40]!r}")
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode(
                "utf-8", "replace")
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata: the value of {key} is not base64") from None
    return result


def _filename(metadata):
    """The upload's name, sanitised now: it is shown (audit log) before it is an archive."""
    return names.sanitise_name(metadata.get("filename") or metadata.get("name"))


def parse_checksum(header):
    """``Upload-Checksum: <algorithm> <base64 digest>`` → (name, digest) or None."""
    if header is None:
        return None
    name, _, value = header.strip().partition(" ")
    if name not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: unsupported algorithm {name!r} "
                         f"(supported: {', '.join(CHECKSUMS)})")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum: the digest is not base64") from None
    return name, digest


def http_date(value):
    return email.utils.format_datetime(value.astimezone(dt.timezone.utc), usegmt=True)


# --- the running hashes --------------------------------------------------------------------

class Hashes:
    """sha256 and md5 of a file's bytes so far; md5 runs on a helper thread (both release
    the GIL on big buffers), as in the storage manager's write path."""

    def __init__(self, sha256=None, md5=None):
        self.sha256 = sha256 or hashlib.sha256()
        self.md5 = md5 or hashlib.md5()

    def update(self, chunk):
        self.begin(chunk).result()

    def begin(self, chunk):
        """Start hashing ``chunk``: md5 on the helper thread, sha256 here; returns md5's
        future, which must be done before the next ``begin``."""
        pending = _hash_pool.submit(self.md5.update, chunk)
        self.sha256.update(chunk)
        return pending

    def copy(self):
        return Hashes(self.sha256.copy(), self.md5.copy())

    @classmethod
    def of_chunks(cls, chunks):
        """Hash a stream of chunks (an S3 upload's segments, read back)."""
        hashes, pending = cls(), None
        for chunk in chunks:
            if pending is not None:
                pending.result()
            pending = hashes.begin(chunk)
        if pending is not None:
            pending.result()
        return hashes

    @classmethod
    def of_file(cls, path, length):
        """Hash the first ``length`` bytes of ``path`` (after a restart; measured 1.65 s per GiB on the dev machine, warm cache)."""
        hashes, remaining = cls(), length
        with open(path, "rb", buffering=0) as source:
            while remaining > 0:
                chunk = source.read(min(8 * READ, remaining))
                if not chunk:
                    raise OSError(f"{path} is shorter than its committed offset")
                hashes.update(chunk)
                remaining -= len(chunk)
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


# --- lookup and locking ----------------------------------------------------------------------

def get_upload(dbsession, upload_id):
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        return None
    return dbsession.get(TusUpload, upload_id)


def is_expired(upload, now=None):
    return upload.expires_at <= (now or utcnow())


def _on_postgresql(dbsession):
    return dbsession.get_bind().dialect.name == "postgresql"


def lock_upload(dbsession, backend, upload, release):
    """Exclusive use of an upload until ``release(fd)`` runs (after the transaction ends).

    An ``flock`` on the partial file holds across the processes of one machine; on
    PostgreSQL the row is also locked ``FOR UPDATE``. A second writer gets 409 at once
    rather than waiting behind a chunk that may take minutes. The row is re-read under the
    lock, so the offset is the last committed one.

    An upload kept in S3 segments may get its chunks at any instance: there the row lock
    decides (``FOR UPDATE NOWAIT``: 409 when another transaction holds it), and no local
    file exists. On SQLite (one machine by nature) such an upload has an empty local file
    that is only its ``flock``.
    """
    path = backend.upload_path(upload.storage_key)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Conflict("another request is writing to this upload; ask its offset "
                           "(HEAD) and continue from there") from None
        except BaseException:
            # Any other refusal (ENOLCK, …): nobody else would ever close it.
            os.close(fd)
            raise
        release(fd)
    if upload.segment_size is not None and _on_postgresql(dbsession):
        try:
            dbsession.refresh(upload, with_for_update={"nowait": True})
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            raise Conflict("another request is writing to this upload; ask its offset "
                           "(HEAD) and continue from there") from None
        return fd
    dbsession.refresh(upload, with_for_update=True)
    return fd


# --- creation ------------------------------------------------------------------------------

def _expiry(settings, ticket, now=None):
    """An unfinished upload may rest TUS_EXPIRY_DAYS after its last chunk, never past the
    token's own expiry."""
    rest = dt.timedelta(days=settings["upload.tus_expiry_days"])
    return min((now or utcnow()) + rest, ticket.expires_at)


def create_upload(dbsession, storage, settings, ticket, *, length, defer, metadata_header,
                  held=0):
    """A new plain upload; it reserves one attempt (atomically). ``held``: bytes of the
    request's body spool the free-space check counts as already taken (creation with
    upload; see ``archives.services.check_can_accept``)."""
    return _create(dbsession, storage, settings, ticket, length=length, defer=defer,
                   metadata_header=metadata_header, concat=None, held=held)


def create_partial(dbsession, storage, settings, ticket, *, length, defer, metadata_header,
                   held=0):
    return _create(dbsession, storage, settings, ticket, length=length, defer=defer,
                   metadata_header=metadata_header, concat="partial", held=held)


# --- what a ticket holds unfinished ------------------------------------------------------------

# Uploads whose bytes are kept for a ticket outside its archives: plain ones not yet an
# archive, and partial ones, finished or not, until a final upload joins them.
HOLDING = TusUpload.finished_at.is_(None) | (TusUpload.concat == "partial")


def _lock_ticket(dbsession, ticket, attempt):
    """Take the ticket's row until the transaction ends, if it can still take uploads
    (423 otherwise); with ``attempt``, spend one of its attempts in the same UPDATE.

    PostgreSQL: the UPDATE's row lock makes a parallel request on the same ticket wait
    for this one's commit, and its next statement then sees this one's rows (READ
    COMMITTED). SQLite: the UPDATE takes the database's write lock, the same effect.
    """
    if attempt:
        tickets.consume_attempt(dbsession, ticket)
        return
    now = utcnow()
    taken = dbsession.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.resolved == false(), Ticket.expires_at > now)
        .values(time_update=Ticket.time_update)
        .execution_options(synchronize_session=False)).rowcount
    if taken != 1:
        dbsession.refresh(ticket)
        refusal = tickets.token_refusal(ticket, now, need_attempt=False)
        raise refusal.error() if refusal else Locked("upload token can no longer be used")


def held_by(dbsession, ticket_id, except_id=None):
    """(uploads, bytes) a ticket holds unfinished: each upload's Upload-Length, or for
    one whose length is deferred, the bytes it has received."""
    query = select(func.count(), func.coalesce(func.sum(
        func.coalesce(TusUpload.length, TusUpload.offset)), 0)).where(
        TusUpload.ticket_id == ticket_id, HOLDING)
    if except_id is not None:
        query = query.where(TusUpload.id != except_id)
    count, size = dbsession.execute(query).one()
    return count, int(size)


def _check_room(dbsession, settings, ticket_id, *, new, size, except_id=None):
    """409 when ``new`` more uploads, 413 when ``size`` more bytes, would take the
    ticket past its bounds. The caller holds the ticket's row (``_lock_ticket``)."""
    most, most_bytes = settings["upload.unfinished_max"], settings["upload.unfinished_max_bytes"]
    count, held = held_by(dbsession, ticket_id, except_id)
    if new and count + new > most:
        raise Conflict(f"this ticket already holds {count} unfinished uploads, the most "
                       f"allowed ({most}); finish, join or terminate one first")
    if held + size > most_bytes:
        raise PayloadTooLarge(
            f"this ticket's unfinished uploads would hold {held + size} bytes, more than "
            f"the {most_bytes} allowed per ticket ({held} already); finish, join or "
            "terminate one first")


def remove_unfinished(dbsession, storage, ticket, reason, give_back=True):
    """Forget what a ticket holds unfinished (it is being resolved or deleted): the rows
    now, their files or segments once the transaction has committed (nothing if it
    aborts). ``give_back``: plain uploads return their attempts (a reopened ticket has
    them again). Returns how many were removed.

    A chunk being written meanwhile: PostgreSQL makes the DELETE wait for it (its row
    lock); on SQLite its offset UPDATE then finds no row and it answers 410 (``_advance``).
    """
    rows = dbsession.scalars(select(TusUpload).where(
        TusUpload.ticket_id == ticket.id, HOLDING)).all()
    removed = 0
    for upload in rows:
        gone = dbsession.execute(
            delete(TusUpload).where(TusUpload.id == upload.id, HOLDING)
            .execution_options(synchronize_session=False)).rowcount
        if gone != 1:
            continue
        removed += 1
        if give_back and upload.holds_attempt and upload.finished_at is None:
            tickets.give_back_attempt(dbsession, ticket.id)
        record(dbsession, "upload.terminated", ticket=ticket, reason=reason,
               detail={"upload": upload.id, "size": upload.length,
                       "received": upload.offset, "concat": upload.concat or ""})
        storage.delete_upload_after_commit(upload.storage_key, abandoned=upload.offset,
                                           segments=upload.segment_size is not None)
        _forget_after_commit(storage, upload.id)
        dbsession.expunge(upload)
    if removed and give_back:
        dbsession.expire(ticket, ["attempts", "time_update"])
    return removed


def _forget_after_commit(storage, upload_id):
    storage.transaction_manager.get().addAfterCommitHook(
        lambda success: HASHES.forget(upload_id) if success else None)


def _create(dbsession, storage, settings, ticket, *, length, defer, metadata_header, concat,
            held):
    if length is not None and defer:
        raise BadRequest("send Upload-Length or Upload-Defer-Length, not both")
    if length is None and not defer:
        raise BadRequest("Upload-Length (or Upload-Defer-Length: 1) is required")
    if length == 0:
        raise BadRequest("empty upload: Upload-Length is 0")
    metadata = parse_metadata(metadata_header)
    archives.check_can_accept(storage, settings, length, held=held)
    # The ticket's row stays locked until the commit: the count below cannot be
    # overtaken by a parallel creation (a plain upload's attempt is spent in the same
    # UPDATE that takes it).
    _lock_ticket(dbsession, ticket, attempt=concat is None)
    _check_room(dbsession, settings, ticket.id, new=1, size=length or 0)
    segments = storage.backend.segments
    segment_size = None
    if segments is None:
        key, _ = storage.new_upload_file()
    else:
        # S3: the bytes go to segment objects any instance reaches; SQLite still needs a
        # local file to lock (PostgreSQL locks the row).
        key, segment_size = uuid.uuid4().hex, segments.size_for(settings["upload.max_size"])
        if not _on_postgresql(dbsession):
            storage.new_upload_file(key)
    upload = TusUpload(
        id=secrets.token_urlsafe(24), ticket_id=ticket.id, length=length, offset=0,
        metadata_header=(metadata_header or "").strip(),
        filename=_filename(metadata),
        filetype=names.clean_label(metadata.get("filetype") or metadata.get("type")),
        concat=concat, parts="", holds_attempt=concat is None, storage_key=key,
        segment_size=segment_size, expires_at=_expiry(settings, ticket))
    dbsession.add(upload)
    dbsession.flush()
    record(dbsession, "upload.started", ticket=ticket,
           detail={"upload": upload.id, "size": length, "name": upload.filename,
                   "concat": concat or ""})
    return upload


def create_final(dbsession, storage, settings, ticket, part_ids, metadata_header, release):
    """Join finished partial uploads, in order, into one archive; spends one attempt.

    The partial uploads must be finished (``concatenation-unfinished`` is not offered), so
    the final upload is complete the moment it exists. Their rows and files go with the
    commit.
    """
    if not part_ids:
        raise BadRequest("Upload-Concat: final needs at least one partial upload URL")
    seen = set()
    for part_id in part_ids:
        # Once each: a partial listed twice would be an archive of bytes sent once.
        if part_id in seen:
            raise BadRequest(f"Upload-Concat: partial upload {part_id} is listed more "
                             "than once")
        seen.add(part_id)
    metadata = parse_metadata(metadata_header)
    parts = []
    for part_id in part_ids:
        part = get_upload(dbsession, part_id)
        if part is None or part.ticket_id != ticket.id or part.concat != "partial":
            raise BadRequest(f"Upload-Concat: {part_id} is not a partial upload of this "
                             "ticket")
        if is_expired(part):
            raise Gone(f"partial upload {part_id} has expired")
        if part.finished_at is None:
            raise BadRequest(f"partial upload {part_id} is not finished "
                             f"({part.offset} of {part.length} bytes)")
        lock_upload(dbsession, storage.backend, part, release)
        parts.append(part)
    total = sum(part.length for part in parts)
    archives.check_can_accept(storage, settings, total)
    tickets.consume_attempt(dbsession, ticket)
    name = _filename(metadata)
    chunks = _part_chunks(storage.backend, parts)
    archive = archives.stage_archive(dbsession, storage, settings, ticket, chunks, name)
    now = utcnow()
    final = TusUpload(
        id=secrets.token_urlsafe(24), ticket_id=ticket.id, length=total, offset=total,
        metadata_header=(metadata_header or "").strip(), filename=name,
        filetype=names.clean_label(metadata.get("filetype") or metadata.get("type")),
        concat="final",
        parts=" ".join(part_ids), holds_attempt=False,
        storage_key=secrets.token_hex(16), expires_at=_expiry(settings, ticket, now),
        finished_at=now, archive_id=archive.id)
    dbsession.add(final)
    for part in parts:
        dbsession.execute(delete(TusUpload).where(TusUpload.id == part.id)
                          .execution_options(synchronize_session=False))
        storage.delete_upload_after_commit(part.storage_key,
                                           segments=part.segment_size is not None)
    dbsession.flush()
    return final, archive


def _part_chunks(backend, parts):
    """The bytes of the partial uploads, in order: local files or S3 segments. They are
    hashed as they pass (partial uploads are not hashed chunk by chunk)."""
    for part in parts:
        if part.segment_size is None:
            yield from _file_chunks([(backend.upload_path(part.storage_key), part.length)])
        else:
            yield from backend.segments.read(part.storage_key, part.segment_size,
                                             part.length)


def _file_chunks(files):
    for path, length in files:
        remaining = length
        with open(path, "rb", buffering=0) as source:
            while remaining > 0:
                chunk = source.read(min(READ, remaining))
                if not chunk:
                    raise OSError(f"{path} is shorter than its upload")
                remaining -= len(chunk)
                yield chunk


# --- chunks --------------------------------------------------------------------------------

class CheckedBody:
    """A PATCH body on its way to storage: counted against its Content-Length, checked
    against its ``Upload-Checksum`` and added to the upload's running hashes (md5 of a
    piece on the helper thread while the caller stores it). Whichever way iterating it
    ends, the hashes are complete when it does; ``check()`` then says whether the body
    was whole and matched its checksum."""

    def __init__(self, chunks, size, hashes, checksum):
        self.chunks, self.size, self.hashes, self.checksum = chunks, size, hashes, checksum
        self.chunk_hash = CHECKSUMS[checksum[0]]() if checksum else None
        self.written = 0

    def __iter__(self):
        pending = None  # md5 of the previous piece, still running on the helper thread
        try:
            for chunk in self.chunks:
                self.written += len(chunk)
                if self.written > self.size:
                    raise BadRequest("the body is longer than its Content-Length")
                if self.hashes is not None:
                    if pending is not None:
                        pending.result()
                    pending = self.hashes.begin(chunk)
                if self.chunk_hash is not None:
                    self.chunk_hash.update(chunk)
                yield chunk
        finally:
            if pending is not None:
                pending.exception()  # finished, whether this state is kept or not

    def check(self):
        if self.written != self.size:
            raise BadRequest("request body ended early (client gone?)", reason="client_gone")
        if self.chunk_hash is not None and self.chunk_hash.digest() != self.checksum[1]:
            raise ChecksumMismatch(f"Upload-Checksum {self.checksum[0]} does not match "
                                   "the chunk; it was discarded")


def append(dbsession, storage, settings, upload, ticket, chunks, size, *, offset,
           checksum=None, length=None, held=0):
    """Append one chunk of ``size`` bytes at ``offset``; returns the archive when it was
    the last one, else None. The caller holds the upload's lock (``lock_upload``).
    ``held``: bytes of the chunk's spool the free-space check counts as already taken."""
    if upload.concat == "final":
        raise Forbidden("a final upload is complete when created; it takes no PATCH")
    # Re-checked on the row read under the lock: a finished upload's partial file may
    # still be a second name of its archive (see _finish), and must never be written.
    if upload.finished_at is not None:
        raise Conflict("the upload is complete; it takes no more bytes")
    if offset != upload.offset:
        raise Conflict(f"Upload-Offset is {offset} but the upload is at {upload.offset}")
    limit = settings["upload.max_size"]
    deferred = upload.length is None
    if length is not None:
        if upload.length is None:
            if length > limit:
                raise PayloadTooLarge(f"archive larger than the limit of {limit} bytes")
            if length < upload.offset + size or length == 0:
                raise BadRequest("Upload-Length is smaller than the bytes sent")
            upload.length = length
        elif length != upload.length:
            raise BadRequest("Upload-Length cannot change once set")
    end = upload.offset + size
    if upload.length is not None and end > upload.length:
        raise BadRequest(f"the chunk goes past Upload-Length ({end} > {upload.length})")
    if end > limit:
        raise PayloadTooLarge(f"archive larger than the limit of {limit} bytes")
    remaining = (upload.length - upload.offset) if upload.length is not None else size
    archives.check_can_accept(storage, settings, remaining, held=held)
    if deferred:
        # Declared only now, or still growing: counted against the ticket's bound with
        # what it will hold, before a byte is written.
        _lock_ticket(dbsession, ticket, attempt=False)
        _check_room(dbsession, settings, ticket.id, new=0,
                    size=upload.length if upload.length is not None else end,
                    except_id=upload.id)
    if upload.segment_size is not None:
        if storage.backend.segments is None:
            raise Gone("the bytes of this upload are in an object store this server no "
                       "longer uses; start a new upload")
        return _append_segments(dbsession, storage, settings, upload, ticket, chunks, size,
                                end, checksum)

    path = storage.backend.upload_path(upload.storage_key)
    if not path.is_file():
        raise Gone("the bytes of this upload are lost; start a new upload")
    # Partial uploads are hashed when they are joined, not chunk by chunk.
    hashes = None
    if upload.concat is None:
        hashes = HASHES.take(upload.id, upload.offset) or Hashes.of_file(path, upload.offset)
    before = hashes.copy() if hashes is not None else None
    body = CheckedBody(chunks, size, hashes, checksum)
    flushed = 0
    with open(path, "r+b", buffering=0) as out:
        fd = out.fileno()
        # Bytes past the committed offset are a failed request's: cut them off.
        os.ftruncate(fd, upload.offset)
        out.seek(upload.offset)
        try:
            with contextlib.closing(iter(body)) as pieces:
                for chunk in pieces:
                    write_all(out, chunk)
                    # The disk starts on the chunk while it still arrives, so the fsync
                    # below finds little left to write (as the storage manager does).
                    if body.written - flushed >= WRITEBACK_EVERY:
                        kernel.start_writeback(fd, upload.offset + flushed,
                                               body.written - flushed)
                        flushed = body.written
            body.check()
            # The offset is reported only for bytes that are on the disk.
            os.fsync(fd)
        except BaseException as exc:
            os.ftruncate(fd, upload.offset)
            if before is not None:
                HASHES.put(upload.id, upload.offset, before)
            if isinstance(exc, OSError) and exc.errno in NO_SPACE:
                # The disk filled while the chunk was written: a clear answer, and the
                # upload stays at its committed offset, to be resumed when space returns.
                raise InsufficientStorage(
                    f"the server's storage is full: the chunk was discarded and the upload "
                    f"stays at offset {upload.offset}; resume it later") from None
            raise
    return _advance(dbsession, storage, settings, upload, ticket, hashes, end,
                    lambda kept: HASHES.put(upload.id, end, kept))


def _append_segments(dbsession, storage, settings, upload, ticket, chunks, size, end,
                     checksum):
    """``append`` for an upload kept in S3 segments (any instance may get any chunk).

    The bytes go to segment objects (``storage/segments.py``); every PUT has answered
    before the new offset is set, so the offset is committed only for stored bytes. A
    failed chunk leaves at most segment bytes past the committed offset, which count for
    nothing and are overwritten by the next chunk. The running hashes come from this
    process's cache when it wrote the previous chunk, else from the segments read back.
    """
    segments = storage.backend.segments
    key, segment_size, offset = upload.storage_key, upload.segment_size, upload.offset
    hashes = None
    try:
        if upload.concat is None:
            hashes = HASHES.take(upload.id, offset) or Hashes.of_chunks(
                segments.read(key, segment_size, offset))
    except OSError as exc:
        raise _store_failed(exc, offset) from None
    before = hashes.copy() if hashes is not None else None
    body = CheckedBody(chunks, size, hashes, checksum)
    try:
        if size:  # an empty PATCH stores nothing (and reads no tail back)
            with contextlib.closing(iter(body)) as pieces:
                segments.write(key, segment_size, offset, pieces)
        body.check()
    except BaseException as exc:
        if before is not None:
            HASHES.put(upload.id, offset, before)
        if isinstance(exc, OSError):
            raise _store_failed(exc, offset) from None
        raise
    return _advance(dbsession, storage, settings, upload, ticket, hashes, end,
                    lambda kept: _remember_after_commit(storage, upload.id, end, kept))


def _advance(dbsession, storage, settings, upload, ticket, hashes, end, remember):
    """The chunk is stored: the new offset and expiry, and at the last byte the archive;
    otherwise ``remember`` keeps the running hashes for the next chunk."""
    now = utcnow()
    upload.offset = end
    upload.expires_at = _expiry(settings, ticket, now)
    try:
        dbsession.flush()
    except StaleDataError:
        # Its ticket was resolved or deleted while the chunk was written (SQLite; on
        # PostgreSQL the row lock kept that waiting): the upload and its file are gone.
        raise Gone("this upload was removed while the chunk was written (its ticket "
                   "was resolved or deleted)") from None
    if upload.length is not None and upload.offset == upload.length:
        return _finish(dbsession, storage, upload, ticket, hashes, now)
    if hashes is not None:
        remember(hashes)
    return None


def _remember_after_commit(storage, upload_id, offset, hashes):
    """Cache the running hashes only once ``offset`` is committed. With several
    instances an entry saved before a commit that then failed could later meet the same
    offset reached by another instance with other bytes; after the commit the bytes
    below ``offset`` never change, so an entry for it is right whoever asks."""
    def remember(success):
        if success:
            HASHES.put(upload_id, offset, hashes)

    storage.transaction_manager.get().addAfterCommitHook(remember)


def _store_failed(exc, offset):
    """The object store failed during a chunk: 503 (retry), the offset unchanged."""
    return ServiceUnavailable(
        f"could not store the chunk: {exc.strerror or exc}; the upload stays at offset "
        f"{offset}; resume it shortly", Retry_After="10")


def _finish(dbsession, storage, upload, ticket, hashes, now):
    upload.finished_at = now
    HASHES.forget(upload.id)
    if upload.concat == "partial":
        dbsession.flush()
        return None
    if upload.segment_size is not None:
        archive = archives.assemble_archive(
            dbsession, storage, ticket, upload.storage_key, upload.segment_size,
            upload.length, hashes.md5.hexdigest(), hashes.sha256.hexdigest(),
            upload.filename)
        storage.delete_upload_after_commit(upload.storage_key, segments=True)
        upload.archive_id = archive.id
        upload.holds_attempt = False
        dbsession.flush()
        return archive
    path = _second_name(storage, storage.backend.upload_path(upload.storage_key))
    archive = archives.adopt_archive(dbsession, storage, ticket, path, upload.length,
                                     hashes.md5.hexdigest(), hashes.sha256.hexdigest(),
                                     upload.filename)
    storage.delete_upload_after_commit(upload.storage_key)
    upload.archive_id = archive.id
    # The attempt now belongs to the archive: nothing to give back any more.
    upload.holds_attempt = False
    dbsession.flush()
    return archive


def _second_name(storage, path):
    """A hard link to the partial file, in staging, for the storage manager to move into
    place at commit; the partial file's own name goes only after the commit.

    Moving the partial file itself would leave, after a crash between that move (the
    storage manager's vote) and the database commit, an unfinished upload whose file is
    gone: the client could never finish it. With a second name the upload stays whole
    (it resumes from its committed offset) and the crash leaves an orphan archive file,
    which ``collector purge`` removes. Where hard links are refused, the file itself
    is moved, as before.
    """
    link = storage.backend.staging_file()
    try:
        os.link(path, link)
    except OSError:
        return path

    def remove(*_):
        link.unlink(missing_ok=True)

    # After an abort, or a failed commit (the manager has moved the name back), the
    # second name goes; after a commit it has become the archive's.
    txn = storage.transaction_manager.get()
    txn.addAfterAbortHook(remove)
    txn.addAfterCommitHook(lambda success: None if success else remove())
    return link


# --- termination and expiry ------------------------------------------------------------------

def terminate(dbsession, storage, upload):
    """Forget the upload and its file; its attempt goes back if it held one (once: only the
    request whose DELETE removed the row gives it back)."""
    removed = dbsession.execute(
        delete(TusUpload).where(TusUpload.id == upload.id)
        .execution_options(synchronize_session=False)).rowcount
    if removed == 1 and upload.holds_attempt and upload.finished_at is None:
        tickets.give_back_attempt(dbsession, upload.ticket_id)
    abandoned = upload.offset if removed == 1 and upload.finished_at is None else None
    if abandoned is not None:
        record(dbsession, "upload.terminated",
               ticket=dbsession.get(tickets.Ticket, upload.ticket_id),
               detail={"upload": upload.id, "size": upload.length, "received": upload.offset})
    storage.delete_upload_after_commit(upload.storage_key, abandoned=abandoned,
                                       segments=upload.segment_size is not None)
    HASHES.forget(upload.id)
    dbsession.expunge(upload)


def _purgeable(now, empty_before):
    """Expired uploads, and (with ``empty_before``) plain uploads that have not received
    a byte since their creation at or before that time."""
    condition = TusUpload.expires_at <= now
    if empty_before is not None:
        condition = condition | (
            (TusUpload.offset == 0) & TusUpload.finished_at.is_(None)
            & TusUpload.concat.is_(None) & (TusUpload.time_update <= empty_before))
    return condition


Purged = collections.namedtuple("Purged", "id storage_key reason")  # "expired" or "empty"


def purge_expired(session, backend, now=None, dry_run=False, empty_before=None):
    """Remove expired uploads (rows, then files), giving back their attempts; commits per
    upload. Returns the removed uploads (``Purged``). An upload being written to is left
    alone.

    ``empty_before``: also remove plain uploads still empty since then. Such an upload is
    most often a creation whose answer (its URL) never reached the client — the server
    died after the commit, or the connection did — so no client can ever continue it,
    and it would hold its attempt until it expires (days): the customer, retrying with
    a new upload, would find the ticket out of attempts. Nothing is lost by removing it:
    it holds no byte, and a client that does know its URL gets 404 and starts again
    (tus clients do), with the attempt given back here.
    """
    now = now or utcnow()
    removed = []
    condition = _purgeable(now, empty_before)
    expired = session.scalars(select(TusUpload).where(condition)).all()
    for upload in expired:
        path = backend.upload_path(upload.storage_key)
        purged = Purged(upload.id, upload.storage_key,
                        "expired" if upload.expires_at <= now else "empty")
        fd = None
        try:
            fd = os.open(path, os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            pass
        except BlockingIOError:
            os.close(fd)
            continue
        except BaseException:
            if fd is not None:
                os.close(fd)
            raise
        try:
            if upload.segment_size is not None and _on_postgresql(session) and \
                    session.scalar(select(TusUpload.id).where(TusUpload.id == upload.id)
                                   .with_for_update(skip_locked=True)) is None:
                # Another instance is writing a chunk to it now (or it is gone).
                session.rollback()
                continue
            if dry_run:
                if upload.segment_size is not None:
                    session.rollback()  # the row lock taken above
                removed.append(purged)
                continue
            # Re-checked in the DELETE: a chunk may have arrived since the SELECT.
            deleted = session.execute(
                delete(TusUpload).where(TusUpload.id == upload.id, condition)
                .execution_options(synchronize_session=False)).rowcount
            if deleted == 1 and upload.holds_attempt and upload.finished_at is None:
                tickets.give_back_attempt(session, upload.ticket_id)
            session.commit()
            if deleted == 1 and upload.finished_at is None:
                # The client never came back: the upload failed, recorded apart.
                record(session, "upload.failed", outcome="failed", reason="client_gone",
                       ticket=session.get(tickets.Ticket, upload.ticket_id),
                       detail={"upload": upload.id, "size": upload.length,
                               "received": upload.offset})
            if deleted == 1:
                path.unlink(missing_ok=True)
                if upload.segment_size is not None:
                    backend.segments.delete(upload.storage_key)
                HASHES.forget(upload.id)
                removed.append(purged)
        finally:
            if fd is not None:
                os.close(fd)
    return removed


def orphan_segments(session, backend, older_than):
    """S3 upload keys whose segments no unfinished upload (or partial one) needs, and
    that nobody wrote to for ``older_than`` seconds: a crash between a finished upload's
    commit and the deletion of its segments, or a creation that never committed."""
    if backend.segments is None:
        return []
    limit = time.time() - older_than
    stored = {key: modified for key, modified in backend.segments.keys().items()
              if modified <= limit}
    known = set(session.scalars(select(TusUpload.storage_key).where(
        (TusUpload.finished_at.is_(None)) | (TusUpload.concat == "partial"))))
    return sorted(set(stored) - known)


def orphan_upload_files(session, backend):
    """Files under ``uploads/`` that no upload needs: no row names them (a crash between
    file and row), or their upload is already an archive (a crash between the commit and
    the removal of the partial file's name)."""
    on_disk = set(backend.upload_keys())
    known = set(session.scalars(select(TusUpload.storage_key).where(
        (TusUpload.finished_at.is_(None)) | (TusUpload.concat == "partial"))))
    return sorted(on_disk - known)
