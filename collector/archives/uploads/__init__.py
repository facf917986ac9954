"""Upload protocols. Each one ends in the storage manager through archives.services.

Here: the single-request upload (``POST /api/v1/archives/``), as ``multipart/form-data``
with a ``file`` field (what the original uploader.sh and web form send) or as a raw body
(``curl -T``, ``--data-binary``), file name from ``Content-Disposition`` or ``?filename=``.
"""

import email.message
import os
import shutil

from collector.archives import services
from collector.archives.storage import LocalArchiveStorage, linux_io
from collector.archives.uploads import receiving
from collector.archives.uploads.multipart import FilePart, MultipartError, boundary_of
from collector.errors import BadRequest

READ = 1024 * 1024


class SpoolReader:
    """Reads waitress's body spool and frees what has been read (see storage.linux_io).

    Safe because an upload is never retried (db.retry_attempts): nothing reads the body
    twice. The bytes copied but not yet freed are at most one step: what a copy needs on
    the disk beyond the spool itself. ``spool_credit`` counts on ``FREE_EVERY``; a reader
    takes the larger ``FREE_EVERY_ROOMY`` steps only when the disk has ``room`` for them
    (each step is one fallocate call, which costs more the more often it runs).
    """

    # A small disk can take a body of its free space less this much.
    FREE_EVERY = 8 * 1024 * 1024
    FREE_EVERY_ROOMY = 64 * 1024 * 1024

    def __init__(self, stream, room=0):
        self.stream = stream
        self.fd = linux_io.fd_of(stream)
        self.position = self.freed = 0
        self.step = (self.FREE_EVERY_ROOMY if room >= self.FREE_EVERY_ROOMY + linux_io.PAGE
                     else self.FREE_EVERY)

    @classmethod
    def of(cls, request):
        """The reader of a request's body, its step chosen by the free space (less the
        reserve) of the spool's filesystem now, after the free-space check."""
        room = shutil.disk_usage(request.storage.backend.staging).free \
            - request.registry.settings["storage.reserve"]
        return cls(request.body_file_raw, room)

    def read(self, size):
        data = self.stream.read(size)
        self.position += len(data)
        if self.fd is not None and self.position - self.freed >= self.step:
            end = self.position - self.position % 4096
            linux_io.punch_hole(self.fd, self.freed, end - self.freed)
            self.freed = end
        return data


def spool_credit(request):
    """Bytes of the request's body that the free-space check may count as space the
    upload already holds on the archives' disk.

    waitress has spooled the whole body to a file in ``DATA_DIR/tmp`` before the app
    runs, so the free space the app sees is what is left *after* that body: counted as
    it is, a body needs twice its size (a 60 MB POST got 507 with 69 MB usable). The
    copy (staging file or tus partial file) is read through ``SpoolReader``, which frees
    the spool behind it, so at its peak the disk holds the spool plus at most
    ``FREE_EVERY`` (and a page) of copied bytes: that much of the body is *not* credited.
    Nothing is credited when the body is not in a file (small bodies, tests), is not on
    the archives' filesystem, or that filesystem cannot free part of a file (then the
    copy needs the whole body again, and the check stays as strict as before).
    """
    length = request.content_length or 0
    storage = request.storage
    if length <= SpoolReader.FREE_EVERY or not isinstance(storage.backend,
                                                          LocalArchiveStorage):
        return 0
    fd = linux_io.fd_of(request.body_file_raw)
    if fd is None:
        return 0
    spool = os.fstat(fd)
    if spool.st_dev != os.stat(storage.backend.archives).st_dev \
            or not linux_io.can_punch_holes(storage.backend.staging):
        return 0
    # What the spool really takes (a sparse or short file takes less than its body).
    taken = min(length, spool.st_blocks * 512)
    return max(0, taken - SpoolReader.FREE_EVERY - linux_io.PAGE)


def raw_chunks(stream, length):
    remaining = length
    while remaining > 0:
        data = stream.read(min(READ, remaining))
        if not data:
            raise BadRequest("request body ended early (client gone?)", reason="client_gone")
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
    services.check_can_accept(request.storage, settings, length,
                              held=spool_credit(request))
    multipart = request.content_type == "multipart/form-data"
    # Spooled and hashed by the server as it arrived: no second pass over the bytes.
    spooled = receiving.spooled_body(request, "multipart" if multipart else "raw")
    if spooled is not None:
        name = spooled.filename if multipart else _raw_name(request)
        archive = services.create_archive(request.dbsession, request.storage, settings,
                                          ticket, spooled, name)
        receiving.check_not_cut(request)
        return archive
    stream = SpoolReader.of(request)
    if multipart:
        try:
            part = FilePart(stream, boundary_of(request.headers["Content-Type"]), "file", length)
            name = part.filename
            return services.create_archive(request.dbsession, request.storage, settings,
                                           ticket, part, name)
        except MultipartError as exc:
            raise BadRequest(str(exc)) from None
    return services.create_archive(request.dbsession, request.storage, settings, ticket,
                                   raw_chunks(stream, length), _raw_name(request))


def _raw_name(request):
    return (request.matchdict.get("filename") or request.GET.get("filename")
            or _disposition_filename(request.headers.get("Content-Disposition")) or "")
