"""Upload protocols. Each one ends in the storage manager through archives.services.

Here: the single-request upload (``POST /api/v1/archives/``), as ``multipart/form-data``
with a ``file`` field (what the original uploader.sh and web form send) or as a raw body
(``curl -T``, ``--data-binary``), file name from ``Content-Disposition`` or ``?filename=``.
"""

import email.message

from collector.archives import services
from collector.archives.storage import kernel
from collector.archives.uploads.multipart import FilePart, MultipartError, boundary_of
from collector.errors import BadRequest

READ = 1024 * 1024


class SpoolReader:
    """Reads waitress's body spool and frees what has been read (see storage.kernel).

    Safe because an upload is never retried (db.retry_attempts): nothing reads the body
    twice.
    """

    FREE_EVERY = 64 * 1024 * 1024

    def __init__(self, stream):
        self.stream = stream
        self.fd = kernel.fd_of(stream)
        self.position = self.freed = 0

    def read(self, size):
        data = self.stream.read(size)
        self.position += len(data)
        if self.fd is not None and self.position - self.freed >= self.FREE_EVERY:
            end = self.position - self.position % 4096
            kernel.punch_hole(self.fd, self.freed, end - self.freed)
            self.freed = end
        return data


def _raw_chunks(stream, length):
    remaining = length
    while remaining > 0:
        data = stream.read(min(READ, remaining))
        if not data:
            raise BadRequest("request body ended early (client gone?)")
        remaining -= len(data)
        yield data


def _disposition_filename(header):
    if not header:
        return None
    message = email.message.EmailMessage()
    message["Content-Disposition"] = header
    return message.get_filename()


def upload_from_request(request, ticket):
    """Validate limits, stream the body into storage, return the new Archive."""
    settings = request.registry.settings
    length = request.content_length
    if length is None:
        raise BadRequest("Content-Length is required")
    if length == 0:
        raise BadRequest("empty upload: the request has no body")
    services.check_can_accept(request.storage, settings, length)
    stream = SpoolReader(request.body_file_raw)
    if request.content_type == "multipart/form-data":
        try:
            part = FilePart(stream, boundary_of(request.headers["Content-Type"]), "file", length)
            name = part.filename
            return services.create_archive(request.dbsession, request.storage, settings,
                                           ticket, part, name)
        except MultipartError as exc:
            raise BadRequest(str(exc)) from None
    name = (request.matchdict.get("filename") or request.GET.get("filename")
            or _disposition_filename(request.headers.get("Content-Disposition")) or "")
    return services.create_archive(request.dbsession, request.storage, settings, ticket,
                                   _raw_chunks(stream, length), name)
