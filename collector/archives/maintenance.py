"""What ``collector purge`` removes, and in which order.

1. Archives the retention rules say are due (audited; ``retention.services``).
2. Archives no row references (a crash between the vote and the commit), once they have
   been in place for ``stale_hours``: a younger one may belong to a commit under way.
3. Derived files (inspect's seek points) of archives that are gone, and half-written ones.
4. Staging leftovers (``DATA_DIR/tmp``; on S3 unfinished multipart uploads).
5. tus uploads that expired, and plain ones still empty ``stale_hours`` after their
   creation (see ``purge_expired_uploads``), giving back the attempts they held.
6. The bytes of uploads that no upload needs any more, in every upload store (a crash
   between their row and their bytes, or between a commit and their removal).

Then, after a real run, the low-storage alert is checked again. The command only prints
what ``purge`` yields.
"""

import collections
import datetime as dt

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from collector.archives.models import Archive, TusUpload
from collector.archives.storage import UploadBusy, alerts
from collector.archives.uploads.tus import HASHES, HOLDING
from collector.audit.services import record
from collector.db import utcnow
from collector.retention import services as retention
from collector.tickets import services as tickets


class Removed(collections.namedtuple("Removed", "what where")):
    """One thing purge removed (or would remove), printable: ``orphan /data/…``."""

    def __str__(self):
        return f"{self.what} {self.where}" if self.what else str(self.where)


def purge(engine, backend, uploads, settings, *, stale_hours, dry_run=False):
    """Remove what a crash, an expiry or the retention rules left (with ``dry_run``, only
    find it); yields a ``Removed`` for each. ``uploads``: the ``UploadStores``."""
    stale = stale_hours * 3600
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session:
        for due in retention.apply(session, backend, settings, now, dry_run):
            yield Removed("", retention.describe(due))
    # An archive is put in place at the vote, just before its row commits: only what has
    # been there for a while, and still has no row after the listing, is an orphan.
    with Session(engine) as session:
        on_disk = set(backend.keys(stale))
        referenced = set(session.scalars(select(Archive.storage_key)))
    for key in sorted(on_disk - referenced):
        if not dry_run:
            backend.delete(key)
        yield Removed("orphan", backend.location(key))
    for key, path in backend.derived_files(stale):
        if key not in referenced or path.name.endswith(".part"):
            if not dry_run:
                path.unlink(missing_ok=True)
            yield Removed("orphan index file", path)
    for item in backend.stale_staging(stale):
        if not dry_run:
            backend.remove_stale(item)
        yield Removed("stale staging", item)
    with Session(engine, expire_on_commit=False) as session:
        for upload in purge_expired_uploads(session, uploads, dry_run=dry_run,
                                            empty_before=now - dt.timedelta(hours=stale_hours)):
            yield Removed(f"{upload.reason} upload", f"{upload.id} {upload.location}")
        orphans = orphan_uploads(session, uploads, stale)
    for store, key in orphans:
        if not dry_run:
            store.remove(key)
        yield Removed(f"orphan {store.label}", store.location(key))
    if not dry_run:
        alerts.check(engine, backend, settings)


Purged = collections.namedtuple("Purged", "id storage_key reason location")


def _purgeable(now, empty_before):
    """Expired uploads, and (with ``empty_before``) plain uploads that have not received
    a byte since their creation at or before that time."""
    condition = TusUpload.expires_at <= now
    if empty_before is not None:
        condition = condition | (
            (TusUpload.offset == 0) & TusUpload.finished_at.is_(None)
            & TusUpload.concat.is_(None) & (TusUpload.time_update <= empty_before))
    return condition


def purge_expired_uploads(dbsession, uploads, now=None, dry_run=False, empty_before=None):
    """Remove expired uploads (rows, then bytes), giving back their attempts; commits per
    upload. Returns the removed uploads (``Purged``, ``reason`` "expired" or "empty").
    An upload being written to is left alone.

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
    for upload in dbsession.scalars(select(TusUpload).where(condition)).all():
        store = uploads.of(upload.segment_size)
        purged = Purged(upload.id, upload.storage_key,
                        "expired" if upload.expires_at <= now else "empty",
                        store.location(upload.storage_key) if store else upload.storage_key)
        held = None
        try:
            held = store.lock(upload.storage_key) if store is not None else None
        except UploadBusy:
            continue
        try:
            row_locked = store is not None and store.shared
            if row_locked and dbsession.scalar(
                    select(TusUpload.id).where(TusUpload.id == upload.id)
                    .with_for_update(skip_locked=True)) is None:
                # Another instance is writing a chunk to it now (or it is gone).
                dbsession.rollback()
                continue
            if dry_run:
                if row_locked:
                    dbsession.rollback()
                removed.append(purged)
                continue
            if _remove_expired(dbsession, upload, condition):
                if store is not None:
                    store.remove(upload.storage_key)
                HASHES.forget(upload.id)
                removed.append(purged)
        finally:
            if held is not None:
                held.release()
    return removed


def _remove_expired(dbsession, upload, condition):
    """The row (re-checked in the DELETE: a chunk may have arrived since the SELECT) and
    the attempt it held, committed; the failed upload audited."""
    deleted = dbsession.execute(
        delete(TusUpload).where(TusUpload.id == upload.id, condition)
        .execution_options(synchronize_session=False)).rowcount
    if deleted == 1 and upload.holds_attempt and upload.finished_at is None:
        tickets.give_back_attempt(dbsession, upload.ticket_id)
    dbsession.commit()
    if deleted == 1 and upload.finished_at is None:
        # The client never came back: the upload failed, recorded apart.
        record(dbsession, "upload.failed", outcome="failed", reason="client_gone",
               ticket=dbsession.get(tickets.Ticket, upload.ticket_id),
               detail={"upload": upload.id, "size": upload.length,
                       "received": upload.offset})
    return deleted == 1


def orphan_uploads(dbsession, uploads, older_than):
    """``(store, key)`` of upload bytes that no upload needs and nobody wrote to for
    ``older_than`` seconds: no row names them (a crash between bytes and row, or a
    creation that never committed), or their upload is an archive already (a crash
    between the commit and the removal of its bytes)."""
    known = set(dbsession.scalars(select(TusUpload.storage_key).where(HOLDING)))
    return [(store, key) for store in uploads.all
            for key in sorted(set(store.keys(older_than)) - known)]
