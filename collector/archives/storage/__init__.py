"""The storage manager: a transaction-aware store for archive bytes.

The manager is a ``transaction`` data manager over one backend (``IArchiveStorage``:
``LocalArchiveStorage`` by default, ``S3ArchiveStorage`` with an ``s3://`` STORAGE_URL).
Bytes are streamed into the backend's staging (a file under ``DATA_DIR/tmp``, or an S3
multipart upload), hashed on the way. At vote time, before the database commits, each
staged archive is published (an atomic rename; completing the multipart upload); if the
database then fails, ``tpc_abort`` takes it away again; on abort what was staged is
discarded. Deletions run after a successful commit only. Hence a row never points to a
missing archive; a crash can at worst leave an orphan, which ``collector purge`` removes.

The bytes of tus uploads that are not archives yet are in an ``IUploadStore`` (local
files, ``uploads.py``; S3 segments, ``segments.py``), chosen per upload by
``UploadStores``; a finished upload becomes an archive through the manager (``finish``).
"""

import logging

from sqlalchemy.engine import make_url

from collector.archives.storage import linux_io  # noqa: F401  (re-exported)
from collector.archives.storage.interfaces import IArchiveStorage, IStaged, IUploadStore, UploadBusy  # noqa: F401
from collector.archives.storage.local import LocalArchiveStorage  # noqa: F401
from collector.archives.storage.staging import LocalFiles, StagedFile  # noqa: F401
from collector.archives.storage.streams import (  # noqa: F401
    CHUNK,
    WRITEBACK_EVERY,
    StorageUnavailable,
    TooLarge,
    write_all,
    write_stream,
)
from collector.archives.storage.uploads import LocalUploadStore, UploadStores
from collector.settings import SettingsError

log = logging.getLogger(__name__)


def make_backend(settings):
    """The archive backend the settings select (``storage.url``)."""
    if settings.get("storage.url"):
        # boto3 is an optional dependency (the ``s3`` extra): imported only when needed.
        try:
            from collector.archives.storage.s3 import S3ArchiveStorage
        except ImportError as exc:
            raise SettingsError(
                f"STORAGE_URL: an s3:// URL needs boto3, which is not installed ({exc}); "
                "install the `s3` extra: pip install 'logs-collector[s3]'") from None
        return S3ArchiveStorage.from_settings(settings)
    return LocalArchiveStorage(settings["data_dir"])


def make_upload_stores(settings, backend):
    """Where tus uploads keep their bytes until they are archives: local files beside a
    local archive backend; S3 segment objects (reachable from every instance) beside an
    S3 one. Local files stay readable there: an upload begun before the move finishes."""
    local = LocalUploadStore(backend.root / "uploads")
    if isinstance(backend, LocalArchiveStorage):
        return UploadStores(local)
    # Only an S3 backend gets here: its module, and so boto3, is loaded already.
    from collector.archives.storage.segments import S3UploadStore

    # SQLite is one machine by nature: an flock on a local file keeps two requests of an
    # upload apart; on PostgreSQL the row lock does, from any instance.
    shared_db = make_url(settings["db_url"]).get_backend_name() == "postgresql"
    return UploadStores(S3UploadStore(backend, lock_files=None if shared_db else local),
                        local)


class StorageManager:
    """Per-request view of the store, joined to the request's transaction."""

    transaction_manager = None

    def __init__(self, backend, transaction_manager, metrics=None, uploads=None):
        self.backend = backend
        # UploadStores: where the bytes of tus uploads are until they are archives.
        self.uploads = uploads
        self.transaction_manager = transaction_manager
        # collector.metrics.Metrics when /metrics is on: told of every archive stored.
        self.metrics = metrics
        self._staged = []
        self._published = []
        self._joined = False

    # --- what services call ---

    def stage(self, chunks, max_size):
        """Stream bytes to staging; they become permanent only if the transaction commits."""
        self._join()
        staged = self.backend.new_staged()
        self._staged.append(staged)
        self.backend.write(staged, chunks, max_size)
        return staged

    def adopt(self, path, size, md5, sha256):
        """Take an already written, fsynced file (a finished tus upload) as an archive.

        Local: it is renamed into place at commit like a staged file, never copied; if the
        transaction aborts it stays where it was (after a failed vote it is moved back).
        S3: its bytes are uploaded now, published at the vote, and the local file is
        removed once the transaction has committed.
        """
        self._join()
        staged = self.backend.adopt(path, size, md5, sha256)
        self._staged.append(staged)
        return staged

    def add_staged(self, staged):
        """Take an archive staged elsewhere (an ``IUploadStore`` that assembles one inside
        the object store), to be published at the vote like the others."""
        self._join()
        self._staged.append(staged)
        return staged

    def on_failure(self, undo):
        """Run ``undo()`` if the transaction aborts or its commit fails."""
        def run():
            try:
                undo()
            except OSError:  # a leftover at worst; purge will find it
                log.exception("could not undo after a failed transaction")

        txn = self.transaction_manager.get()
        txn.addAfterAbortHook(run)
        txn.addAfterCommitHook(lambda success: None if success else run())

    def delete_after_commit(self, key):
        self._after_commit(self.backend.delete, key)

    def delete_upload_after_commit(self, store, key, abandoned=None):
        """Remove a tus upload's bytes from ``store`` once the transaction that forgot it
        committed (a failure leaves an orphan, which purge removes). ``abandoned`` (the
        bytes it had) when the upload ended without becoming an archive: counted as a
        ``terminated`` upload then."""
        def remove(k):
            if abandoned is not None and self.metrics is not None:
                self.metrics.upload_ended("terminated", abandoned)
            store.remove(k)

        self._after_commit(remove, key)

    def _after_commit(self, remove, key):
        def _delete(success):
            if success:
                try:
                    remove(key)
                except OSError:  # an orphan at worst; purge will find it
                    log.exception("could not delete file %s", key)

        self.transaction_manager.get().addAfterCommitHook(_delete)

    def open(self, key):
        return self.backend.open(key)

    def download_url(self, key, disposition, expires):
        """A presigned URL of the archive (``IDirectDownloads`` backends only)."""
        return self.backend.download_url(key, disposition, expires)

    # --- IDataManager ---

    def _join(self):
        if not self._joined:
            self.transaction_manager.get().join(self)
            self._joined = True

    def sortKey(self):
        # Before zope.sqlalchemy's "~sqlalchemy:…": files are in place before the DB commits.
        return "collector-storage"

    def abort(self, transaction):
        self._discard()

    def tpc_begin(self, transaction):
        pass

    def commit(self, transaction):
        pass

    def tpc_vote(self, transaction):
        for staged in self._staged:
            self.backend.publish(staged)
            self._published.append(staged)
        self._staged = []

    def tpc_finish(self, transaction):
        # Committed: each published file is an archive now, whichever protocol sent it.
        for staged in self._published:
            try:
                self.backend.release(staged)
            except OSError:  # a leftover in staging at worst; purge will find it
                log.exception("could not release staged archive %s", staged.key)
            if self.metrics is not None:
                self.metrics.upload_ended("stored", staged.size)
        self._published = []
        self._joined = False

    def tpc_abort(self, transaction):
        for staged in self._published:
            self.backend.unpublish(staged)
        self._published = []
        self._discard()

    def _discard(self):
        for staged in self._staged:
            try:
                self.backend.discard(staged)
            except Exception:  # noqa: BLE001 - an abort must finish; purge finds leftovers
                log.exception("could not discard staged archive %s", staged.key)
        self._staged = []
        self._joined = False


def includeme(config):
    settings = config.get_settings()
    backend = make_backend(settings)
    config.registry["archive_storage"] = backend
    uploads = config.registry["upload_stores"] = make_upload_stores(settings, backend)

    def storage(request):
        return StorageManager(backend, request.tm, request.registry.get("metrics"), uploads)

    config.add_request_method(storage, reify=True)
