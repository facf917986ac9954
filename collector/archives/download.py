"""An archive's bytes as a streamed response: one implementation for the API and the pages.

``Content-Disposition`` carries the name as RFC 6266 ``filename*`` (see archives/names.py);
``Range``, ``If-Range`` and the validators are answered by webob's conditional response.
"""

from pyramid.response import FileIter, Response

from collector.archives.names import content_disposition
from collector.audit.services import record
from collector.errors import NotFound, RangeNotSatisfiable

BLOCK = 256 * 1024


def archive_response(request, row):
    """Stream archive ``row`` (whole or the requested range) from the request's storage."""
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
    # A ranged answer needs FileIter's seek; a whole one goes through the server's
    # file wrapper, which streams without Python-level iteration.
    if request.range is not None or wrapper is None:
        response.app_iter = FileIter(handle, BLOCK)
    else:
        response.app_iter = wrapper(handle, BLOCK)
    # After app_iter: setting app_iter clears Content-Length.
    response.content_length = row.size
    if request.method != "HEAD":
        record(request, "archive.download", ticket=row.ticket, archive=row,
               detail={"name": row.name, "size": row.size,
                       "range": request.headers.get("Range", "")[:100]})
    return response
