"""tus 1.0.0 resumable uploads: the rules behind ``/api/v1/uploads/``.

An upload is a ``TusUpload`` row and its bytes in an ``IUploadStore`` (local files, or S3
segment objects any instance reaches; ``archives/storage/``), recorded with the row. The
protocol code here does not know which: it asks ``storage.uploads`` for the upload's
store and uses its contract.

- ``headers``: the protocol (version, extensions, header parsing, its status codes);
- ``access``: finding an upload, its expiry, its store, and exclusive use of it (the lock);
- ``lifecycle``: plain, partial and final (joined) uploads, what a ticket may hold
  unfinished, termination and removal with the ticket: the attempts reserved and given
  back;
- ``chunks``: appending a chunk, and the archive at the last byte;
- ``hashes``: the running sha256 (and md5 while small) kept between chunks.

What ``collector purge`` removes (expired uploads, orphan bytes) is decided in
``archives.maintenance``.
"""

from collector.archives.uploads.tus.access import get_upload, is_expired, lock_upload  # noqa: F401
from collector.archives.uploads.tus.chunks import CheckedBody, append  # noqa: F401
from collector.archives.uploads.tus.hashes import HASHES, Hashes  # noqa: F401
from collector.archives.uploads.tus.headers import (  # noqa: F401
    CHECKSUMS,
    CONTENT_TYPE,
    EXTENSIONS,
    VERSION,
    ChecksumMismatch,
    Gone,
    PreconditionFailed,
    UnsupportedMediaType,
    http_date,
    parse_checksum,
    parse_length,
    parse_metadata,
)
from collector.archives.uploads.tus.lifecycle import (  # noqa: F401
    HOLDING,
    create_final,
    create_partial,
    create_upload,
    held_by,
    remove_unfinished,
    terminate,
)
