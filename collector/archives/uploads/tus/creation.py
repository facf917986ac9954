"""Creating uploads: plain, partial (``Upload-Concat: partial``) and final (the join).

Attempts: a plain upload reserves one of the ticket's attempts when it is created; partial
uploads reserve none, and the final upload that joins them spends one.
"""

import secrets

from sqlalchemy import delete

from collector.archives import services as archives
from collector.archives.models import TusUpload
from collector.archives.uploads.tus.access import get_upload, lock_upload, store_of
from collector.archives.uploads.tus.bounds import check_room, expiry, is_expired, lock_ticket
from collector.archives.uploads.tus.headers import Gone, file_name, file_type, parse_metadata
from collector.audit.services import record
from collector.db import utcnow
from collector.errors import BadRequest
from collector.tickets import services as tickets


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


def create_final(dbsession, storage, settings, ticket, part_ids, metadata_header, release):
    """Join finished partial uploads, in order, into one archive; spends one attempt.

    The partial uploads must be finished (``concatenation-unfinished`` is not offered), so
    the final upload is complete the moment it exists. Their rows and bytes go with the
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
        filetype=file_type(metadata), concat="final", parts=" ".join(part_ids),
        holds_attempt=False, storage_key=secrets.token_hex(16),
        expires_at=expiry(settings, ticket, now), finished_at=now, archive_id=archive.id)
    dbsession.add(final)
    for part, store in parts:
        dbsession.execute(delete(TusUpload).where(TusUpload.id == part.id)
                          .execution_options(synchronize_session=False))
        storage.delete_upload_after_commit(store, part.storage_key)
    dbsession.flush()
    return final, archive
