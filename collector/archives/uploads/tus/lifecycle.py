"""The life of an upload outside its chunks: creation (plain, partial, final), what a
ticket may hold unfinished, and the end of an upload that never becomes an archive.

Attempts: a plain upload reserves one of the ticket's attempts when it is created; partial
uploads (``Upload-Concat: partial``) reserve none, and the final upload that joins them
spends one. Terminating an upload that holds an attempt, or removing it with its ticket
(resolved), gives it back. Expired ones are removed by ``collector purge``
(``archives.maintenance``).

What a ticket holds unfinished is bounded (``UPLOAD_UNFINISHED_MAX`` uploads,
``UPLOAD_UNFINISHED_MAX_BYTES`` bytes; ``check_room``): partial uploads spend no attempt,
so without it one token could fill the disk with them, unseen by staff. The count is taken
under the ticket's row (``lock_ticket``), so parallel requests, on any instance, are
counted one after another.
"""

import secrets

from sqlalchemy import delete, false, func, select, update

from collector.archives import services as archives
from collector.archives.models import TusUpload
from collector.archives.uploads.tus.access import (
    expiry,
    get_upload,
    is_expired,
    lock_upload,
    store_of,
)
from collector.archives.uploads.tus.hashes import HASHES, forget_after_commit
from collector.archives.uploads.tus.headers import Gone, file_name, file_type, parse_metadata
from collector.audit.services import record
from collector.db import utcnow
from collector.errors import BadRequest, Conflict, Locked, PayloadTooLarge
from collector.tickets import services as tickets
from collector.tickets.models import Ticket

# Uploads whose bytes are kept for a ticket outside its archives: plain ones not yet an
# archive, and partial ones, finished or not, until a final upload joins them.
HOLDING = TusUpload.finished_at.is_(None) | (TusUpload.concat == "partial")
# What the row keeps of a final upload's Upload-Concat (the column's size).
PARTS_MAX_CHARS = TusUpload.parts.type.length


def lock_ticket(dbsession, ticket, attempt):
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


def check_room(dbsession, settings, ticket_id, *, new, size, except_id=None):
    """409 when ``new`` more uploads, 413 when ``size`` more bytes, would take the
    ticket past its bounds. The caller holds the ticket's row (``lock_ticket``)."""
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


# --- creation ------------------------------------------------------------------------------

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
    lock_ticket(dbsession, ticket, attempt=concat is None)
    check_room(dbsession, settings, ticket.id, new=1, size=length or 0)
    store = storage.uploads.new
    key, layout = store.create(settings["upload.max_size"])
    storage.on_failure(lambda: store.remove(key))
    upload = TusUpload(
        id=secrets.token_urlsafe(24), ticket_id=ticket.id, length=length, offset=0,
        metadata_header=(metadata_header or "").strip(), filename=file_name(metadata),
        filetype=file_type(metadata), concat=concat, parts="",
        holds_attempt=concat is None, storage_key=key, segment_size=layout,
        expires_at=expiry(settings, ticket))
    dbsession.add(upload)
    dbsession.flush()
    record(dbsession, "upload.started", ticket=ticket,
           detail={"upload": upload.id, "size": length, "name": upload.filename,
                   "concat": concat or ""})
    return upload


def create_final(dbsession, storage, settings, ticket, part_ids, part_urls,
                 metadata_header, release):
    """Join finished partial uploads, in order, into one archive; spends one attempt.
    ``part_urls``: the partial uploads as the request named them, for HEAD to echo.

    The partial uploads must be finished (``concatenation-unfinished`` is not offered), so
    the final upload is complete the moment it exists. Their rows and bytes go with the
    commit.
    """
    if not part_ids:
        raise BadRequest("Upload-Concat: final needs at least one partial upload URL")
    if len(part_urls) > PARTS_MAX_CHARS:
        raise BadRequest(f"Upload-Concat: the URLs are longer than {PARTS_MAX_CHARS} "
                         "characters; name the partial uploads by relative URL")
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
        lock_upload(dbsession, storage, part, release)
        parts.append((part, store_of(storage, part)))
    total = sum(part.length for part, _ in parts)
    archives.check_can_accept(storage, settings, total)
    tickets.consume_attempt(dbsession, ticket)
    name = file_name(metadata)
    # Partial uploads are not hashed chunk by chunk: their bytes are, as they pass here.
    chunks = (chunk for part, store in parts
              for chunk in store.read(part.storage_key, part.segment_size, part.length))
    archive = archives.stage_archive(dbsession, storage, settings, ticket, chunks, name)
    now = utcnow()
    final = TusUpload(
        id=secrets.token_urlsafe(24), ticket_id=ticket.id, length=total, offset=total,
        metadata_header=(metadata_header or "").strip(), filename=name,
        filetype=file_type(metadata), concat="final", parts=part_urls,
        holds_attempt=False, storage_key=secrets.token_hex(16),
        expires_at=expiry(settings, ticket, now), finished_at=now, archive_id=archive.id)
    dbsession.add(final)
    for part, store in parts:
        dbsession.execute(delete(TusUpload).where(TusUpload.id == part.id)
                          .execution_options(synchronize_session=False))
        storage.delete_upload_after_commit(store, part.storage_key)
    dbsession.flush()
    return final, archive


# --- uploads that end without an archive ---------------------------------------------------

def terminate(dbsession, storage, upload):
    """Forget the upload and its bytes; its attempt goes back if it held one (once: only
    the request whose DELETE removed the row gives it back)."""
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
    _remove_bytes_after_commit(storage, upload, abandoned)
    HASHES.forget(upload.id)
    dbsession.expunge(upload)


def _remove_bytes_after_commit(storage, upload, abandoned):
    store = storage.uploads.of(upload.segment_size)
    if store is not None:  # else in an object store this server no longer reaches
        storage.delete_upload_after_commit(store, upload.storage_key, abandoned=abandoned)


def remove_unfinished(dbsession, storage, ticket, reason, give_back=True):
    """Forget what a ticket holds unfinished (it is being resolved or deleted): the rows
    now, their bytes once the transaction has committed (nothing if it aborts).
    ``give_back``: plain uploads return their attempts (a reopened ticket has them
    again). Returns how many were removed.

    A chunk being written meanwhile: PostgreSQL makes the DELETE wait for it (its row
    lock); on SQLite its offset UPDATE then finds no row and it answers 410.
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
        _remove_bytes_after_commit(storage, upload, upload.offset)
        forget_after_commit(storage, upload.id)
        dbsession.expunge(upload)
    if removed and give_back:
        dbsession.expire(ticket, ["attempts", "time_update"])
    return removed
