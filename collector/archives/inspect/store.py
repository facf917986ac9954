"""Keeping the member index: claimed once, built beside the requests, saved whole.

``ensure(request, archive)`` returns the archive's ``ArchiveIndex`` row when it is ready
(or failed). When there is none, it starts a builder thread and answers 503 with
``Retry-After``: the first view of an archive, never its upload, pays for the one pass.

The build cannot run inside the request: on SQLite a request that has written anything
(a bearer token's last use, say) holds the database's one write lock until it commits, so
the index could not be saved before the request ends. The builder claims the archive by
inserting the ``building`` row (the primary key makes a second claim fail, in this
process or another), refreshes its heartbeat while it works, and writes the members in
the same transaction that marks the row ``ready``: an index is whole or absent. A
``building`` row whose heartbeat is older than ``STALE_AFTER`` was left by a process that
died; the next view takes it over and builds again.
"""

import datetime as dt
import functools
import logging
import secrets
import threading

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from collector.archives.inspect import formats, index
from collector.archives.inspect.formats import InspectError
from collector.archives.inspect.models import ArchiveIndex, ArchiveMember
from collector.db import utcnow
from collector.errors import NotFound, ServiceUnavailable

log = logging.getLogger(__name__)

STALE_AFTER = dt.timedelta(seconds=60)
HEARTBEAT_EVERY = dt.timedelta(seconds=5)
RETRY_AFTER = "2"
# Builds at once in one process (each takes a core while it decompresses).
MAX_BUILDERS = 2
_builders = {}  # archive id → thread, in this process
_builders_lock = threading.Lock()
_slots = threading.BoundedSemaphore(MAX_BUILDERS)


def limits(settings):
    return index.Limits(settings["inspect.max_index_bytes"], settings["inspect.max_ratio"],
                        settings["inspect.max_members"])


def busy():
    return ServiceUnavailable("the member index of this archive is being built; "
                              "retry in a few seconds", Retry_After=RETRY_AFTER)


def _claim(engine, archive_id):
    """A claim token when this caller is to build the index; None when it is ready/failed."""
    now = utcnow()
    claim = secrets.token_hex(16)
    with Session(engine) as session:
        row = session.get(ArchiveIndex, archive_id)
        if row is not None and row.state != "building":
            return None
        if row is None:
            session.add(ArchiveIndex(archive_id=archive_id, state="building", claim=claim,
                                     format="", error="", members=0, total_size=0,
                                     heartbeat_at=now, time_create=now))
            try:
                session.commit()
            except IntegrityError:
                # Another request claimed it first (or the archive was just deleted).
                session.rollback()
                if session.get(ArchiveIndex, archive_id) is None:
                    raise NotFound("the archive no longer exists") from None
                raise busy() from None
            return claim
        if row.heartbeat_at > now - STALE_AFTER:
            raise busy()
        # Left by a builder that died: take it over, unless someone else just did.
        taken = session.execute(
            update(ArchiveIndex).where(ArchiveIndex.archive_id == archive_id,
                                       ArchiveIndex.claim == row.claim)
            .values(claim=claim, heartbeat_at=now)).rowcount
        session.commit()
        if not taken:
            raise busy()
        log.info("rebuilding the half-built index of archive %s", archive_id)
        return claim


class _Heartbeat:
    def __init__(self, engine, archive_id, claim):
        self.engine, self.archive_id, self.claim = engine, archive_id, claim
        self.last = utcnow()

    def __call__(self):
        now = utcnow()
        if now - self.last < HEARTBEAT_EVERY:
            return
        self.last = now
        with Session(self.engine) as session:
            session.execute(update(ArchiveIndex).where(
                ArchiveIndex.archive_id == self.archive_id,
                ArchiveIndex.claim == self.claim).values(heartbeat_at=now))
            session.commit()


def _save(engine, archive_id, claim, values, members=()):
    with Session(engine) as session:
        saved = session.execute(update(ArchiveIndex).where(
            ArchiveIndex.archive_id == archive_id, ArchiveIndex.claim == claim)
            .values(heartbeat_at=utcnow(), members=len(members), **values)).rowcount
        if not saved:
            session.rollback()  # taken over meanwhile: the other builder's result counts
            return
        session.execute(delete(ArchiveMember).where(ArchiveMember.archive_id == archive_id))
        rows = [{"archive_id": archive_id, "seq": m.seq, "path": m.path, "name": m.name,
                 "size": m.size, "mtime": m.mtime, "offset": m.offset, "kind": m.kind,
                 "compression": m.compression, "target": m.target} for m in members]
        for start in range(0, len(rows), 5000):
            session.execute(insert(ArchiveMember), rows[start:start + 5000])
        try:
            session.commit()
        except IntegrityError:  # the archive was deleted while its index was built
            session.rollback()


def build_now(engine, storage, settings, archive, claim):
    key = archive.storage_key
    heartbeat = _Heartbeat(engine, archive.id, claim)
    try:
        result = index.build(source(storage, archive), archive.name, limits(settings),
                             str(storage.index_path(key, "gzidx")), heartbeat)
    except InspectError as exc:
        _save(engine, archive.id, claim, {"state": "failed", "error": str(exc)})
        return
    except BaseException:
        # Unexpected: let the next request try again rather than keep a failure.
        with Session(engine) as session:
            session.execute(delete(ArchiveIndex).where(ArchiveIndex.archive_id == archive.id,
                                                       ArchiveIndex.claim == claim))
            session.commit()
        raise
    _save(engine, archive.id, claim, {"state": "ready", "format": result.format,
                                      "error": result.error,
                                      "total_size": result.total_size}, result.members)


def _state(engine, archive_id):
    with Session(engine) as session:
        row = session.get(ArchiveIndex, archive_id)
        if row is not None:
            session.expunge(row)
        return row


def ensure(request, archive):
    """The archive's index row when it is ready or failed; else a build starts (503)."""
    engine = request.registry["db_engine"]
    row = _state(engine, archive.id)
    if row is not None and row.state != "building":
        return row
    if row is None or row.heartbeat_at <= utcnow() - STALE_AFTER:
        _start(engine, request.storage.backend, request.registry.settings, archive)
    raise busy()


def _start(engine, storage, settings, archive):
    with _builders_lock:
        running = _builders.get(archive.id)
        if running is not None and running.is_alive():
            return
        # Plain values: the ORM object belongs to the request's session.
        snapshot = _Archive(archive.id, archive.storage_key, archive.name, archive.size,
                            archive.time_create)
        thread = threading.Thread(target=_build_in_thread,
                                  args=(engine, storage, settings, snapshot),
                                  name=f"index-{archive.id}", daemon=True)
        _builders[archive.id] = thread
        thread.start()


class _Archive:
    def __init__(self, archive_id, storage_key, name, size, time_create):
        self.id, self.storage_key, self.name = archive_id, storage_key, name
        self.size, self.time_create = size, time_create


def source(backend, archive):
    """``archive``'s bytes as the inspect readers take them, from whichever backend."""
    return formats.Source(functools.partial(backend.open, archive.storage_key),
                          archive.size, archive.time_create)


def _build_in_thread(engine, storage, settings, archive):
    with _slots:
        try:
            claim = _claim(engine, archive.id)
            if claim is not None:
                build_now(engine, storage, settings, archive, claim)
        except (ServiceUnavailable, NotFound):
            pass  # someone else builds it, or the archive is gone
        except Exception:
            log.exception("building the index of archive %s failed", archive.id)
        finally:
            with _builders_lock:
                if _builders.get(archive.id) is threading.current_thread():
                    del _builders[archive.id]


def wait_for_builders(timeout=30):
    """Join this process's builder threads (tests, and a clean shutdown)."""
    with _builders_lock:
        threads = list(_builders.values())
    for thread in threads:
        thread.join(timeout)


def members(dbsession, archive_id, limit=None, offset=0, path=None):
    query = select(ArchiveMember).where(ArchiveMember.archive_id == archive_id)
    if path is not None:
        return dbsession.scalar(query.where(ArchiveMember.path == path))
    query = query.order_by(ArchiveMember.seq).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return dbsession.scalars(query).all()
