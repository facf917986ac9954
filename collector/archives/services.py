"""Domain rules for archives: lookup, listing, creation from a stream, deletion."""

from sqlalchemy import bindparam, func, select

from collector.archives import checksums
from collector.archives.filenames import sanitise_name
from collector.archives.models import Archive, TusUpload
from collector.archives.storage import StorageUnavailable, TooLarge
from collector.audit.services import record
from collector.db import as_integer, utcnow
from collector.errors import BadRequest, InsufficientStorage, PayloadTooLarge, ServiceUnavailable
from collector.tickets import services as tickets
from collector.tickets.models import Ticket


def get_archive(dbsession, archive_id):
    archive_id = as_integer(archive_id)
    return None if archive_id is None else dbsession.get(Archive, archive_id)


def list_archives(dbsession, user, filters, limit, offset):
    """Archives the user may view (by their ticket's platform), newest first."""
    conditions = []
    visible = tickets.visible_platform_ids(dbsession, user)
    if visible is not None:
        conditions.append(Archive.ticket_id.in_(
            select(Ticket.id).where(Ticket.platform_id.in_(visible))))
    if filters.get("ticket"):
        conditions.append(Archive.ticket_id.in_(
            select(Ticket.id).where(Ticket.number.in_(filters["ticket"]))))
    if filters.get("id"):
        conditions.append(Archive.id.in_(filters["id"]))
    if filters.get("time_create__gte"):
        conditions.append(Archive.time_create >= filters["time_create__gte"])
    if filters.get("time_create__lte"):
        conditions.append(Archive.time_create <= filters["time_create__lte"])
    return tickets.page(dbsession, Archive, conditions, limit, offset)


def archives_of_ticket(dbsession, ticket):
    """Every archive of one ticket, oldest first (the ticket's own ACL already decided)."""
    return dbsession.scalars(
        select(Archive).where(Archive.ticket_id == ticket.id).order_by(Archive.id)).all()


def count_by_ticket(dbsession, ticket_ids):
    """``{ticket id: number of archives}`` for the given tickets (one grouped query)."""
    if not ticket_ids:
        return {}
    return dict(dbsession.execute(
        select(Archive.ticket_id, func.count()).where(Archive.ticket_id.in_(ticket_ids))
        .group_by(Archive.ticket_id)).all())


def resumable_uploads(engine, ticket, now=None):
    """The uploads a ticket's token can still finish: plain ones, unfinished and not
    expired, the most recently moved first. ``ticket``: a ``tickets.token_state`` row.

    A partial upload is left out: it is a piece that only the client that made it can join
    into a final upload, so nobody could continue it from the list. None are listed once
    the ticket is resolved or its token expired (no chunk would be accepted), but a token
    with no attempt left still lists them: each already holds the attempt it reserved.
    One short read on a connection of its own, as the public token check asks it.
    """
    now = now or utcnow()
    if tickets.token_refusal(ticket, now, need_attempt=False):
        return []
    with engine.connect() as connection:
        return connection.execute(_RESUMABLE, {"ticket": ticket.id, "now": now}).all()


# Bounded anyway by UPLOAD_UNFINISHED_MAX; the limit keeps the answer small if it is raised.
RESUMABLE_LISTED = 20
_RESUMABLE = (select(TusUpload.filename, TusUpload.length, TusUpload.offset,
                     TusUpload.expires_at)
              .where(TusUpload.ticket_id == bindparam("ticket"),
                     TusUpload.concat.is_(None), TusUpload.finished_at.is_(None),
                     TusUpload.expires_at > bindparam("now"))
              .order_by(TusUpload.time_update.desc(), TusUpload.id)
              .limit(RESUMABLE_LISTED))


def check_can_accept(storage, settings, expected_size, held=0):
    """Refuse before copying a byte: too large (413) or not enough space (507).

    ``held``: bytes of ``expected_size`` already on the archives' disk, which the copy
    gives back as it goes — the request's own body in waitress's spool, less what the
    copy holds twice at its peak (``uploads.spool_credit``). The free space seen now
    is after the spool, so without it a body would need twice its size.
    """
    limit = settings["upload.max_size"]
    if expected_size is not None and expected_size > limit:
        raise PayloadTooLarge(f"archive larger than the limit of {limit} bytes")
    free = storage.backend.usage()["free"] - settings["storage.reserve"]
    if expected_size is not None and expected_size - held > free:
        raise InsufficientStorage("not enough free space on the server for this archive")
    if free <= 0:
        raise InsufficientStorage("the server's storage is full")


def _not_stored(exc):
    """The answer when the store failed while an archive was written: 503 when the object
    store is not answering (retry later), 507 when a disk is full or failing."""
    if isinstance(exc, StorageUnavailable):
        return ServiceUnavailable(f"could not store the archive: {exc.strerror}; retry "
                                  "shortly", Retry_After="10")
    return InsufficientStorage(f"could not store the archive: {exc.strerror}")


def create_archive(dbsession, storage, settings, ticket, chunks, name):
    """Stream ``chunks`` into storage and record the archive, spending one attempt.

    Everything happens in the caller's transaction: if anything fails, the staged file is
    removed and the attempt is not spent.
    """
    try:
        staged = storage.stage(chunks, settings["upload.max_size"])
    except TooLarge:
        raise PayloadTooLarge(
            f"archive larger than the limit of {settings['upload.max_size']} bytes") from None
    except OSError as exc:
        raise _not_stored(exc) from None
    if staged.size == 0:
        raise BadRequest("empty upload: the file has no bytes")
    tickets.consume_attempt(dbsession, ticket)
    archive = Archive(ticket_id=ticket.id, storage_key=staged.key, name=sanitise_name(name),
                      size=staged.size, md5=staged.md5, sha256=staged.sha256)
    dbsession.add(archive)
    dbsession.flush()
    return recorded(dbsession, archive, ticket, "single")


def archive_finished_upload(dbsession, ticket, name, stage):
    """Record an archive from a finished tus upload: ``stage()`` hands its bytes to the
    storage manager (``IUploadStore.finish``: a local file moved into place at commit, or
    S3 segments joined inside the object store) and returns the ``IStaged``. The attempt
    was reserved when the upload was created, so none is spent here."""
    try:
        staged = stage()
    except OSError as exc:  # the object store failed, or refused the finished bytes
        raise _not_stored(exc) from None
    return _finished_tus_upload(dbsession, ticket, staged.key, name, staged.size,
                                staged.md5, staged.sha256)


def _finished_tus_upload(dbsession, ticket, key, name, size, md5, sha256):
    archive = Archive(ticket_id=ticket.id, storage_key=key, name=sanitise_name(name),
                      size=size, md5=md5, sha256=sha256)
    dbsession.add(archive)
    dbsession.flush()
    return recorded(dbsession, archive, ticket, "tus")


def stage_archive(dbsession, storage, settings, ticket, chunks, name):
    """Like ``create_archive`` for bytes whose attempt is already spent (tus concatenation)."""
    try:
        staged = storage.stage(chunks, settings["upload.max_size"])
    except OSError as exc:
        raise _not_stored(exc) from None
    archive = Archive(ticket_id=ticket.id, storage_key=staged.key, name=sanitise_name(name),
                      size=staged.size, md5=staged.md5, sha256=staged.sha256)
    dbsession.add(archive)
    dbsession.flush()
    return recorded(dbsession, archive, ticket, "tus-concat")


def recorded(dbsession, archive, ticket, how):
    """The ``upload.finished`` event of a new archive (in its transaction); an md5 left
    to compute (archives over 4 MiB) is handed to the md5 worker once it commits."""
    record(dbsession, "upload.finished", ticket=ticket, archive=archive,
           detail={"size": archive.size, "sha256": archive.sha256, "name": archive.name,
                   "protocol": how})
    checksums.after_commit(dbsession, archive)
    return archive


def delete_archive(dbsession, storage, archive):
    tickets.check_not_held(archive.ticket)
    record(dbsession, "archive.delete", ticket=archive.ticket, archive=archive,
           detail={"size": archive.size, "sha256": archive.sha256, "name": archive.name})
    storage.delete_after_commit(archive.storage_key)
    dbsession.delete(archive)
    dbsession.flush()




