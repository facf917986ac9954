"""One member's bytes as a streamed response: one implementation for the API and the pages.

Only that member is read (seeking where the format allows); a ``Range`` is answered from
where it starts. The bytes are the member's as stored (a nested ``.gz`` stays compressed),
always ``application/octet-stream``, and every byte produced is charged to the read
budget (``INSPECT_MAX_READ_BYTES``).
"""

import posixpath

from pyramid.response import Response

from collector.archives.download import content_disposition
from collector.archives.inspect import formats, services
from collector.audit.services import record
from collector.errors import RangeNotSatisfiable, Unprocessable

BLOCK = 256 * 1024


class MemberIter:
    """A member's bytes for webob: whole, or the range asked for (seeking when it can)."""

    def __init__(self, stream, size):
        self.stream = stream
        self.size = size

    def __iter__(self):
        return self._chunks(self.size)

    def _chunks(self, left):
        try:
            while left > 0:
                data = self.stream.read(min(BLOCK, left))
                if not data:
                    break
                left -= len(data)
                yield data
        except formats.DAMAGE:
            # Headers are gone already: end the body short (the length tells the client).
            return
        finally:
            self.stream.close()

    def app_iter_range(self, start, stop):
        if self.stream.seekable():
            self.stream.seek(start)
        else:
            formats.skip(self.stream, start)
        return self._chunks(min(stop, self.size) - start)

    def close(self):
        self.stream.close()


def member_response(request, archive, path):
    """The response with member ``path`` of ``archive`` (whole, or the requested range)."""
    index_row, row = services.member_of(request, archive, path)
    response = Response(conditional_response=True, content_type="application/octet-stream")
    response.etag = f"{archive.sha256[:32]}-{row.seq}"
    response.accept_ranges = "bytes"
    response.content_disposition = content_disposition(posixpath.basename(row.path))
    response.cache_control = "private, no-transform"
    if request.range is not None and request.range.range_for_length(row.size) is None \
            and response in request.if_range:
        raise RangeNotSatisfiable("requested range not satisfiable",
                                  Content_Range=f"bytes */{row.size}")
    try:
        stream = services.open_stored(request, archive, index_row, row)
    except formats.InspectError as exc:
        raise Unprocessable(str(exc)) from None
    budget = formats.Budget(request.registry.settings["inspect.max_read_bytes"],
                            what=f"reading {row.path}")
    response.app_iter = MemberIter(formats.Counted(stream, budget), row.size)
    # After app_iter: setting app_iter clears Content-Length.
    response.content_length = row.size
    if request.method != "HEAD":
        record(request, "archive.download_member", ticket=archive.ticket, archive=archive,
               detail={"path": row.path[:500], "size": row.size})
    return response
