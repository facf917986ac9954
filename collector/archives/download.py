"""An archive's bytes as a response: one implementation for the API and the pages.

``Content-Disposition`` carries the name as RFC 6266 ``filename*`` (``content_disposition`` below);
``Range``, ``If-Range`` and the validators are answered by webob's conditional response.
With ``STORAGE_DOWNLOAD=redirect`` (S3 only) a GET is instead answered ``302`` to a
short-lived presigned URL that sends the same name; ``Range`` and validators are then
between the client and the object store. Either way the caller got here through the
``download`` permission, and the download is audited.
"""

import re
import unicodedata
import urllib.parse

from pyramid.response import FileIter, Response

from collector.archives.filenames import DEFAULT_NAME, sanitise_name
from collector.audit.services import record
from collector.errors import NotFound, RangeNotSatisfiable

BLOCK = 256 * 1024
# The ASCII fallback of Content-Disposition: letters, digits and a few harmless marks —
# no quote, backslash, ``;``, ``%`` or control character can reach the header.
_FALLBACK_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+,=@~!#$&'\[\]{}^-]")


class RangedFileIter(FileIter):
    """pyramid's ``FileIter`` plus the ``app_iter_range`` that webob's conditional response
    asks for: a range starts with a seek (on S3: one ranged GET from that offset) instead
    of webob reading and dropping every byte before it.

    ``file_wrapper``: the server's (``wsgi.file_wrapper``), for a local file. The range is
    then handed to it from the seeked position: waitress sends a wrapped file from its own
    loop, up to the ``Content-Length`` webob sets for the range, instead of copying each
    block the app yields into its output buffer (which spills to a temporary file past
    1 MiB): measured 5–6 ms against ~1 ms for the last 1 MB of an archive."""

    def __init__(self, file, block_size=BLOCK, file_wrapper=None):
        super().__init__(file, block_size)
        self.file_wrapper = file_wrapper

    def app_iter_range(self, start, stop):
        self.file.seek(start)
        if self.file_wrapper is not None:
            return self.file_wrapper(self.file, self.block_size)
        return _Slice(self.file, None if stop is None else stop - start, self.block_size)


class _Slice:
    """``length`` bytes (None: to the end) of ``file`` from where it stands; closes it."""

    def __init__(self, file, length, block_size):
        self.file, self.left, self.block_size = file, length, block_size

    def __iter__(self):
        return self

    def __next__(self):
        if self.left is not None and self.left <= 0:
            raise StopIteration
        size = self.block_size if self.left is None else min(self.block_size, self.left)
        data = self.file.read(size)
        if not data:
            raise StopIteration
        if self.left is not None:
            self.left -= len(data)
        return data

    def close(self):
        self.file.close()


def archive_response(request, row):
    """Archive ``row`` (whole or the requested range): streamed from the request's
    storage, or a redirect to it (``STORAGE_DOWNLOAD=redirect``, GET only: a HEAD has no
    bytes to send and is answered here, as when streaming)."""
    if request.method == "GET" and request.registry.settings["storage.download"] == "redirect":
        return _redirect(request, row)
    # Always octet-stream: a client must never decompress or render a customer's archive.
    response = Response(conditional_response=True, content_type="application/octet-stream")
    response.etag = row.sha256
    response.last_modified = row.time_create
    response.accept_ranges = "bytes"
    response.content_disposition = content_disposition(row.name)
    response.cache_control = "private, no-transform"
    if request.range is not None and request.range.range_for_length(row.size) is None \
            and response in request.if_range:
        # webob would answer this itself, in plain text; keep our error contract (JSON
        # under /api/, a page elsewhere).
        raise RangeNotSatisfiable("requested range not satisfiable",
                                  Content_Range=f"bytes */{row.size}")
    try:
        handle = request.storage.open(row.storage_key)
    except FileNotFoundError:
        raise NotFound("the archive's file is missing from storage") from None
    wrapper = request.environ.get("wsgi.file_wrapper")
    # A ranged answer needs the seek of RangedFileIter; a whole one from a local file
    # goes through the server's file wrapper, which streams without Python-level
    # iteration. Not an object's reader: waitress's wrapper reads ahead and seeks back
    # for every socket send, and each of those seeks would be a new ranged GET.
    local = wrapper is not None and _is_os_file(handle)
    if request.range is not None or not local:
        response.app_iter = RangedFileIter(handle, BLOCK, wrapper if local else None)
    else:
        response.app_iter = wrapper(handle, BLOCK)
    # After app_iter: setting app_iter clears Content-Length.
    response.content_length = row.size
    if request.method != "HEAD":
        _audit(request, row)
    return response


def _is_os_file(handle):
    try:
        handle.fileno()
    except (OSError, AttributeError):  # io.UnsupportedOperation is an OSError
        return False
    return True


def _redirect(request, row):
    """``302`` to a presigned GET of the object, valid ``STORAGE_DOWNLOAD_EXPIRY`` s."""
    try:
        url = request.storage.download_url(
            row.storage_key, content_disposition(row.name),
            request.registry.settings["storage.download_expiry"])
    except FileNotFoundError:
        raise NotFound("the archive's file is missing from storage") from None
    _audit(request, row, redirect=True)
    # The URL is a credential for its lifetime: no cache may keep it or replay it later.
    return Response(status=302, location=url, cache_control="private, no-store")


def _audit(request, row, redirect=False):
    detail = {"name": row.name, "size": row.size,
              "range": request.headers.get("Range", "")[:100]}
    if redirect:
        detail["redirect"] = True
    record(request, "archive.download", ticket=row.ticket, archive=row, detail=detail)


def ascii_fallback(name):
    """The plain ``filename="…"`` for clients that ignore ``filename*``: accents dropped,
    every other character outside a small safe set replaced by ``_``."""
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    plain = _FALLBACK_UNSAFE.sub("_", plain).strip(" .")
    return plain or DEFAULT_NAME


def content_disposition(name, default="download"):
    """RFC 6266 ``attachment`` with an ASCII fallback and the exact (sanitised) name as
    RFC 8187 ``filename*``; safe for any input, a member name from an archive included."""
    name = sanitise_name(name, default)
    return (f'attachment; filename="{ascii_fallback(name)}"; '
            f"filename*=UTF-8''{urllib.parse.quote(name, safe='')}")
