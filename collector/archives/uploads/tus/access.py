"""Finding an upload, how long it may rest, the store that holds its bytes, and exclusive
use of it."""

import datetime as dt
import re

from sqlalchemy.exc import OperationalError

from collector.archives.models import TusUpload
from collector.archives.storage import UploadBusy
from collector.archives.uploads.tus.headers import Gone
from collector.db import utcnow
from collector.errors import Conflict

_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
BUSY = ("another request is writing to this upload; ask its offset (HEAD) and continue "
        "from there")


def get_upload(dbsession, upload_id):
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        return None
    return dbsession.get(TusUpload, upload_id)


def store_of(storage, upload):
    """The ``IUploadStore`` that holds ``upload``'s bytes; 410 when this server cannot
    reach them any more."""
    store = storage.uploads.of(upload.segment_size)
    if store is None:
        raise Gone("the bytes of this upload are in an object store this server no "
                   "longer uses; start a new upload")
    return store


def lock_upload(dbsession, storage, upload, release):
    """Exclusive use of an upload until ``release(lock)`` runs (after the transaction
    ends). The row is re-read under the lock, so the offset is the last committed one.

    The store locks what it can see (an ``flock`` on a local file holds across the
    processes of one machine); the row is locked ``FOR UPDATE`` too. Where the store is
    shared by every instance (S3 segments on PostgreSQL) the row lock decides, ``NOWAIT``:
    a second writer gets 409 at once rather than waiting behind a chunk that may take
    minutes.
    """
    store = storage.uploads.of(upload.segment_size)
    shared = store is not None and store.shared
    if store is not None:
        try:
            held = store.lock(upload.storage_key)
        except UploadBusy:
            raise Conflict(BUSY) from None
        if held is not None:
            release(held)
    if not shared:
        dbsession.refresh(upload, with_for_update=True)
        return
    try:
        dbsession.refresh(upload, with_for_update={"nowait": True})
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
            raise
        raise Conflict(BUSY) from None


def expiry(settings, ticket, now=None):
    """An unfinished upload may rest TUS_EXPIRY_DAYS after its last chunk, never past the
    token's own expiry."""
    rest = dt.timedelta(days=settings["upload.tus_expiry_days"])
    return min((now or utcnow()) + rest, ticket.expires_at)


def is_expired(upload, now=None):
    return upload.expires_at <= (now or utcnow())
