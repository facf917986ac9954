"""Appending a chunk, and the archive at the last byte.

Each chunk goes to the upload's store (``IUploadStore.append``), hashed on the way; the
store has made it durable before the new offset is written (committed by the request's
transaction), so the offset is only ever reported for stored bytes. When the last byte
arrives the store hands the bytes to the storage manager as an archive
(``IUploadStore.finish``) and the archive row is added in the same transaction; the
upload's own bytes go after the commit, so a crash at any point leaves either the whole
upload or the archive.
"""

import contextlib
import errno

from sqlalchemy.orm.exc import StaleDataError

from collector.archives import services as archives
from collector.archives.storage import StorageUnavailable
from collector.archives.storage.spooled import SpooledBody
from collector.archives.uploads.tus.access import expiry, store_of
from collector.archives.uploads.tus.hashes import HASHES, remember_after_commit, running_hashes
from collector.archives.uploads.tus.headers import CHECKSUMS, ChecksumMismatch, Gone
from collector.archives.uploads.tus.lifecycle import check_room, lock_ticket
from collector.db import utcnow
from collector.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    PayloadTooLarge,
    ServiceUnavailable,
)

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class CheckedBody:
    """A PATCH body on its way to storage: counted against its Content-Length, checked
    against its ``Upload-Checksum`` and added to the upload's running hashes. Once every
    piece has been given, it
    raises unless the body was whole and matched its checksum (``check``), so the store
    never makes a bad chunk durable."""

    def __init__(self, chunks, size, hashes, checksum):
        self.chunks, self.size, self.hashes, self.checksum = chunks, size, hashes, checksum
        self.chunk_hash = CHECKSUMS[checksum[0]]() if checksum else None
        self.written = 0

    def __iter__(self):
        for chunk in self.chunks:
            self.written += len(chunk)
            if self.written > self.size:
                raise BadRequest("the body is longer than its Content-Length")
            if self.hashes is not None:
                self.hashes.update(chunk)
            if self.chunk_hash is not None:
                self.chunk_hash.update(chunk)
            yield chunk
        self.check()

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
    # Re-checked on the row read under the lock: a finished upload's bytes may still be
    # a second name of its archive (see LocalUploadStore.finish), and must never change.
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
        lock_ticket(dbsession, ticket, attempt=False)
        check_room(dbsession, settings, ticket.id, new=0,
                   size=upload.length if upload.length is not None else end,
                   except_id=upload.id)
    store = store_of(storage, upload)
    if _hashed_on_arrival(chunks, upload, size, checksum):
        # The server hashed the chunk as it arrived, from this offset's running hashes:
        # check its checksum, then the store takes the spool as it is (no pass in Python).
        if checksum is not None and chunks.checksum != checksum[1]:
            raise ChecksumMismatch(f"Upload-Checksum {checksum[0]} does not match the "
                                   "chunk; it was discarded")
        hashes = chunks.hashes if upload.concat is None else None
        try:
            store.append(upload.storage_key, upload.segment_size, upload.offset, chunks)
        except OSError as exc:
            raise _not_stored(exc, upload.offset) from None
        return _advance(dbsession, storage, store, settings, upload, ticket, hashes, end)
    hashes = None
    # Partial uploads are hashed when they are joined, not chunk by chunk.
    if upload.concat is None:
        try:
            hashes = running_hashes(store, upload)
        except OSError as exc:
            raise _not_stored(exc, upload.offset) from None
    before = hashes.copy() if hashes is not None else None
    try:
        with contextlib.closing(iter(CheckedBody(chunks, size, hashes, checksum))) as body:
            store.append(upload.storage_key, upload.segment_size, upload.offset, body)
    except BaseException as exc:
        if before is not None:
            HASHES.put(upload.id, upload.offset, before)
        if isinstance(exc, OSError):
            raise _not_stored(exc, upload.offset) from None
        raise
    return _advance(dbsession, storage, store, settings, upload, ticket, hashes, end)


def _hashed_on_arrival(body, upload, size, checksum):
    """Whether ``body`` is a spooled chunk whose digest fits this upload as it is now
    (under its lock): the whole chunk, hashed from this upload's offset (any upload's
    empty start is the same), with the checksum the request asks for."""
    if not isinstance(body, SpooledBody) or body.base is None or body.size != size:
        return False
    upload_id, offset = body.base
    if offset != upload.offset or (offset and upload_id != upload.id):
        return False
    if upload.concat is None and body.hashes is None:
        return False  # no running hashes for that offset here: rebuilt from the store
    return checksum is None or body.checksum is not None


def _not_stored(exc, offset):
    """The answer when a chunk could not be stored; the upload stays at ``offset``."""
    if isinstance(exc, FileNotFoundError):
        return Gone("the bytes of this upload are lost; start a new upload")
    if isinstance(exc, StorageUnavailable):
        # The object store failed: retry shortly.
        return ServiceUnavailable(
            f"could not store the chunk: {exc.strerror or exc}; the upload stays at "
            f"offset {offset}; resume it shortly", Retry_After="10")
    if exc.errno in NO_SPACE:
        # The disk filled while the chunk was written: a clear answer, and the upload
        # stays at its committed offset, to be resumed when space returns.
        return InsufficientStorage(
            f"the server's storage is full: the chunk was discarded and the upload "
            f"stays at offset {offset}; resume it later")
    return exc


def _advance(dbsession, storage, store, settings, upload, ticket, hashes, end):
    """The chunk is stored: the new offset and expiry, and at the last byte the archive;
    otherwise the running hashes are kept for the next chunk."""
    now = utcnow()
    upload.offset = end
    upload.expires_at = expiry(settings, ticket, now)
    try:
        dbsession.flush()
    except StaleDataError:
        # Its ticket was resolved or deleted while the chunk was written (SQLite; on
        # PostgreSQL the row lock kept that waiting): the upload and its bytes are gone.
        raise Gone("this upload was removed while the chunk was written (its ticket "
                   "was resolved or deleted)") from None
    if upload.length is not None and upload.offset == upload.length:
        return finish(dbsession, storage, store, upload, ticket, hashes, now)
    if hashes is not None:
        remember_after_commit(storage, upload.id, end, hashes)
    return None


def finish(dbsession, storage, store, upload, ticket, hashes, now):
    upload.finished_at = now
    HASHES.forget(upload.id)
    if upload.concat == "partial":
        dbsession.flush()
        return None
    md5, sha256 = hashes.md5.hexdigest(), hashes.sha256.hexdigest()
    archive = archives.archive_finished_upload(
        dbsession, ticket, upload.filename,
        lambda: store.finish(storage, upload.storage_key, upload.segment_size,
                             upload.length, md5, sha256))
    storage.delete_upload_after_commit(store, upload.storage_key)
    upload.archive_id = archive.id
    # The attempt now belongs to the archive: nothing to give back any more.
    upload.holds_attempt = False
    dbsession.flush()
    return archive
