"""Upload protocols. Each one ends in the storage manager through archives.services.

Here: the single-request upload (``POST /api/v1/archives/``), as ``multipart/form-data``
with a ``file`` field (what the original uploader.sh and web form send) or as a raw body
(``curl -T``, ``--data-binary``), file name from ``Content-Disposition`` or ``?filename=``.
"""

import email.message

from collector.archives import services
from collector.archives.uploads.multipart import FilePart, MultipartError, boundary_of
from collector.errors import BadRequest

READ = 1024 * 1024


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
    stream = request.body_file_raw
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
