"""Uploads that end without becoming an archive: terminated by the client (tus
termination), or removed with their ticket (resolved or deleted). Expired ones are
removed by ``collector purge`` (``archives.maintenance``).

Terminating an upload that holds an attempt gives it back. The rows go in the caller's
transaction, the bytes once it has committed (nothing if it aborts).
"""

from sqlalchemy import delete, select

from collector.archives.models import TusUpload
from collector.archives.uploads.tus.bounds import HOLDING
from collector.archives.uploads.tus.hashes import HASHES, forget_after_commit
from collector.audit.services import record
from collector.tickets import services as tickets


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
