"""``IArchiveStorage``: what a backend for *finished archives* provides.

The ``StorageManager`` (the transaction data manager) is the only caller of the staging
and publishing methods; the rest of the app reads (``open``, ``exists``), lists
(``keys``, for ``collector purge``) and asks about space (``usage``, ``writable``).
Every backend passes the shared contract suite, ``tests/unit/archives/storage_contract.py``.

What is *not* in the interface, on purpose: the inspect index's seek points
(``DATA_DIR/index``) and the staging directory (``DATA_DIR/tmp``) stay on the local disk
whichever backend holds the archives; both backends get them from ``LocalFiles``
(``index_path``, ``staging_file``). The bytes of tus uploads that are not archives yet
have an interface of their own, ``IUploadStore`` below: local files
(``uploads.LocalUploadStore``) or S3 segment objects (``segments.S3UploadStore``), both
passing ``tests/unit/archives/storage/upload_store_contract.py``.

Keys are built by the backend from random ids (never from a client's file name).
"""

from zope.interface import Attribute, Interface


class IStaged(Interface):
    """Bytes on their way into the store (returned by ``new_staged`` and ``adopt``)."""

    key = Attribute("the archive's storage key (random hex), the row's storage_key")
    size = Attribute("bytes written")
    md5 = Attribute("hex md5 of the bytes, once written")
    sha256 = Attribute("hex sha256 of the bytes, once written")


class IArchiveStorage(Interface):
    """Finished archives, keyed by ``storage_key``."""

    def new_staged():
        """A new, empty ``IStaged`` that nobody can read yet."""

    def write(staged, chunks, max_size):
        """Stream the byte ``chunks`` into ``staged``, counting and hashing (sha256, md5)
        on the way; never holds the whole file in memory. Raises ``TooLarge`` past
        ``max_size`` and ``OSError`` when the store refuses; the caller then ``discard``s."""

    def adopt(path, size, md5, sha256):
        """An ``IStaged`` for a finished, hashed local file (a finished tus upload, an
        imported file). ``path`` is the caller's to keep until the transaction ends: it
        may be consumed at ``publish`` (local: renamed) and is left alone by ``discard``
        and ``unpublish``."""

    def publish(staged):
        """Make ``staged`` readable under its key. Called at ``tpc_vote``, before the
        database commits: afterwards the row may point to it."""

    def unpublish(staged):
        """Undo ``publish`` (the database did not commit). An adopted file is given
        back to its path."""

    def discard(staged):
        """Forget bytes that were never published (the transaction aborted)."""

    def release(staged):
        """The transaction committed: drop what ``staged`` still holds outside the store
        (S3: the adopted local file, uploaded already)."""

    def delete(key):
        """Remove an archive (and what was derived from it). Called after a commit only;
        a missing archive is not an error."""

    def open(key):
        """A readable, seekable binary file object of the archive (ranged reads:
        ``seek`` then ``read``). ``FileNotFoundError`` when there is none."""

    def exists(key):
        """Whether an archive is stored under ``key``."""

    def location(key):
        """Where the archive is, for people (a path, an ``s3://`` URL): purge prints it."""

    def keys(older_than=0.0):
        """Every key put in place at least ``older_than`` seconds ago (for ``collector
        purge``: such objects with no row are orphans; a younger one may belong to a
        transaction that is committing now)."""

    def usage():
        """``{"total", "used", "free"}`` in bytes: the disk for the local backend; the
        configured quota and the bytes the app stores for S3."""

    def writable():
        """Whether a write would succeed now (the health check); cached briefly."""

    def stale_staging(older_than):
        """Staging leftovers older than ``older_than`` seconds (a crash's remains), each
        printable; ``remove_stale`` removes one."""

    def remove_stale(item):
        """Remove one item of ``stale_staging``."""


class IDirectDownloads(Interface):
    """A backend whose archives clients can fetch themselves (S3: presigned URLs), for
    ``STORAGE_DOWNLOAD=redirect``. Not part of ``IArchiveStorage``: the local disk has no
    URL to give, and the settings refuse ``redirect`` without an S3 backend."""

    def download_url(key, disposition, expires):
        """A URL that answers a plain GET (and ranged GETs) with the archive's bytes for
        ``expires`` seconds, sending ``disposition`` as ``Content-Disposition`` and
        ``application/octet-stream``. ``FileNotFoundError`` when there is no archive."""


class UploadBusy(Exception):
    """Another request holds the upload (``IUploadStore.lock``): answered 409."""


class IUploadStore(Interface):
    """The bytes of tus uploads that are not archives yet, keyed by the upload row's
    ``storage_key``. Each row also records the store's ``layout`` for it, given by
    ``create`` (the ``segment_size`` column: None for local files).

    Which bytes count is decided by the database alone: the row's committed ``offset``.
    A store may hold bytes past it (a request whose commit never came); they count for
    nothing, and the next ``append`` replaces them. The running hashes are not the
    store's: the tus rules keep them (``read`` rebuilds them after a restart).
    """

    shared = Attribute("whether every instance reaches these bytes: then the database "
                       "row lock, not ``lock``, keeps two writers apart")
    label = Attribute("what purge calls this store's leftovers (\"upload file\" …)")

    def owns(layout):
        """Whether an upload recorded with ``layout`` keeps its bytes here."""

    def create(max_size):
        """Room for a new, empty upload of at most ``max_size`` bytes; returns ``(key,
        layout)``. The caller removes it again if its transaction fails."""

    def lock(key):
        """Exclusive use of the upload against the requests this store can see: an
        object whose ``release()`` ends it, or None when there is nothing to lock here
        (``shared`` stores: the row lock decides). ``UploadBusy`` when it is held."""

    def append(key, layout, offset, chunks):
        """Store the byte ``chunks`` from ``offset`` on. When it returns, every byte is
        durable; whatever lay past ``offset`` is replaced. If it raises (the iterator of
        ``chunks`` included), the first ``offset`` bytes are as they were.
        ``FileNotFoundError``: the upload's bytes are gone; ``StorageUnavailable``: the
        store did not answer; ``OSError`` ENOSPC: full."""

    def read(key, layout, length):
        """The upload's first ``length`` bytes, in chunks (to hash them again after a
        restart, or to join partial uploads). ``OSError`` when fewer are stored."""

    def finish(manager, key, layout, length, md5, sha256):
        """Hand the first ``length`` bytes to the storage manager ``manager`` as an
        archive, published at its vote like any other; returns the ``IStaged``. The
        upload's own bytes stay until ``remove``: if the transaction fails, the upload
        can still be finished."""

    def remove(key):
        """Forget an upload's bytes (after the commit that forgot its row); a missing
        upload is not an error."""

    def keys(older_than):
        """The key of every upload with bytes here that nobody wrote to for
        ``older_than`` seconds (purge: those no row needs are orphans)."""

    def location(key):
        """Where the upload's bytes are, for people (purge prints it)."""
