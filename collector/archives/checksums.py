"""The md5 of an archive over 4 MiB, computed in the background after its upload.

sha256 is the archive's integrity check, computed while the bytes arrive; md5 is kept
for the original logs-collector's API field only. Hashing it costs ~1.6 s/GiB, most of
an upload's wall time, so the upload path computes it only for small archives
(``streams.MD5_INLINE_MAX``) and records a bigger one with ``md5`` NULL. Then:

* ``after_commit(dbsession, archive)``, called once per new archive (services.recorded),
  hands the archive to the process's ``Md5Worker`` once its transaction has committed;
* the worker's one thread reads the archive through the storage backend (local disk or
  S3, 1 MiB at a time) and writes ``md5`` with ``UPDATE … WHERE md5 IS NULL`` on a
  connection of its own: an archive deleted meanwhile updates nothing and is skipped;
* crash safety: a process that dies before the job ran leaves the row with md5 NULL.
  The app queues every such row when it starts (``Md5Worker.sweep``, in the worker's
  thread, so startup does not wait) and ``collector purge`` fills the rest
  (``fill_missing``). A row computed twice (two processes' sweeps) gets the same value.

Until then the API answers ``"md5": null`` and the tus receipt has no md5 header.
"""

import hashlib
import logging
import queue
import threading
import time

from sqlalchemy import bindparam, select, update

from collector.archives.models import Archive

log = logging.getLogger(__name__)

READ_SIZE = 1024 * 1024
# Jobs waiting at most; past it a job is dropped with a warning and left to the next
# sweep (startup, ``collector purge``): the queue never holds the process's memory.
QUEUE_MAX = 1000

_archives = Archive.__table__
_MISSING = (select(_archives.c.id, _archives.c.storage_key)
            .where(_archives.c.md5.is_(None)).order_by(_archives.c.id))
_THIS = (_archives.c.id == bindparam("archive_id")) & (
    _archives.c.storage_key == bindparam("key")) & _archives.c.md5.is_(None)
_STILL_MISSING = select(_archives.c.id).where(_THIS)
_FILL = update(_archives).where(_THIS).values(md5=bindparam("computed"))


def md5_of(backend, key):
    """The hex md5 of the stored archive ``key``, read 1 MiB at a time."""
    digest = hashlib.md5()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    with backend.open(key) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()


def missing(engine):
    """``[(archive id, storage key)]`` of the archives whose md5 is not computed yet."""
    with engine.connect() as connection:
        return connection.execute(_MISSING).all()


def _still_missing(engine, archive_id, key):
    with engine.connect() as connection:
        return connection.execute(
            _STILL_MISSING, {"archive_id": archive_id, "key": key}).first() is not None


def fill(engine, backend, archive_id, key):
    """Compute and store the md5 of one archive if it is still missing; the md5, or None
    when there was nothing to do (computed already, or the archive is gone)."""
    if not _still_missing(engine, archive_id, key):
        return None
    try:
        md5 = md5_of(backend, key)
    except FileNotFoundError:
        # Deleted since (its row is gone too): nothing to say. A row still there whose
        # bytes are missing is worth a warning.
        if _still_missing(engine, archive_id, key):
            log.warning("md5: archive %s has no stored bytes at %s", archive_id,
                        backend.location(key))
        return None
    with engine.begin() as connection:
        done = connection.execute(_FILL, {"archive_id": archive_id, "key": key,
                                         "computed": md5})
    return md5 if done.rowcount else None


def fill_missing(engine, backend, dry_run=False):
    """Compute every md5 still missing (``collector purge``); yields ``(id, md5)`` for each
    archive filled (with ``dry_run``: ``(id, None)`` for each that would be)."""
    for archive_id, key in missing(engine):
        if dry_run:
            yield archive_id, None
            continue
        md5 = fill(engine, backend, archive_id, key)
        if md5 is not None:
            yield archive_id, md5


class Md5Worker:
    """One thread computing md5s, fed by a bounded queue, started with the first job."""

    def __init__(self, engine, backend):
        self.engine = engine
        self.backend = backend
        self._queue = queue.Queue(QUEUE_MAX)
        self._lock = threading.Lock()
        self._thread = None

    def submit(self, archive_id, key):
        """Compute the md5 of this archive soon (never blocks, never raises)."""
        self._put((archive_id, key))

    def sweep(self):
        """Queue every archive whose md5 is missing: one job reads the list, in the thread."""
        self._put(None)

    def _put(self, job):
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            log.warning("md5: %d jobs waiting; archive %s is left to the next sweep "
                        "(startup, collector purge)", QUEUE_MAX, job[0] if job else "sweep")
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="collector-md5",
                                                daemon=True)
                self._thread.start()

    def join(self, timeout):
        """Wait until every job queued so far has run; whether it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def _run(self):
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    for archive_id, key in missing(self.engine):
                        self._fill(archive_id, key)
                else:
                    self._fill(*job)
            except Exception:  # a database that is down: the next sweep will do it
                log.exception("md5: the sweep of archives without md5 failed")
            finally:
                self._queue.task_done()

    def _gone(self, archive_id, key):
        try:
            return not _still_missing(self.engine, archive_id, key)
        except Exception:  # the database is down: the failure is what to log
            return False

    def _fill(self, archive_id, key):
        try:
            md5 = fill(self.engine, self.backend, archive_id, key)
        except Exception:  # a failing store or database: logged, left to the next sweep
            if self._gone(archive_id, key):
                return  # deleted while it was read (an S3 object vanishing mid-read)
            log.exception("md5: could not compute the md5 of archive %s", archive_id)
            return
        if md5 is not None:
            log.info("md5: archive %s: %s", archive_id, md5)


def after_commit(dbsession, archive):
    """Hand ``archive`` to the worker once its transaction has committed, if its md5 is
    missing. Without a request (a console session) or a worker, the next sweep does it."""
    if archive.md5 is not None:
        return
    request = dbsession.info.get("request")
    worker = request.registry.get("md5_worker") if request is not None else None
    if worker is None:
        return
    archive_id, key = archive.id, archive.storage_key

    def submit(success):
        if success:
            worker.submit(archive_id, key)

    request.tm.get().addAfterCommitHook(submit)


def includeme(config):
    """The process's worker (``MD5_WORKER``, on by default), and a sweep of the archives
    a previous process left without md5, queued once the configuration is committed."""
    settings = config.get_settings()
    if not settings["md5.worker"]:
        return

    def start():
        registry = config.registry
        registry["md5_worker"] = worker = Md5Worker(registry["db_engine"],
                                                    registry["archive_storage"])
        worker.sweep()

    config.action(None, start, order=1000)
