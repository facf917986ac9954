"""/api/v1/archives/{id}/members/, …/members/{path}, …/lines/{path}, …/search and
/api/v1/tickets/{number}/search: looking inside archives. Every one needs ``download``
(a two-factor verified caller), decided by the archive's or the ticket's node in the tree.
"""

import posixpath

from cornice import Service
from pyramid.response import Response
from sqlalchemy import select

from collector.api.v1 import error_handler, iso, paginate, paginated
from collector.archives.download import content_disposition
from collector.archives.inspect import formats, services, store
from collector.archives.models import Archive
from collector.errors import RangeNotSatisfiable, Unprocessable
from collector.security import Permission

members = Service(name="archive_members", pyramid_route="api.archive.members",
                  description="The files inside an archive", error_handler=error_handler)
member = Service(name="archive_member", pyramid_route="api.archive.member",
                 description="One member's bytes, as stored (Range supported)",
                 error_handler=error_handler)
lines = Service(name="archive_member_lines", pyramid_route="api.archive.lines",
                description="A page of a member's lines, for the viewer",
                error_handler=error_handler)
archive_search = Service(name="archive_search", pyramid_route="api.archive.search",
                         description="Search the text members of an archive",
                         error_handler=error_handler)
ticket_search = Service(name="ticket_search", pyramid_route="api.ticket.search",
                        description="Search every archive of a ticket",
                        error_handler=error_handler)

BLOCK = 256 * 1024


def serialise_member(request, row):
    archive_id = row.archive_id
    return {
        "path": row.path, "name": row.name, "size": row.size, "mtime": iso(row.mtime),
        "kind": row.kind, "compression": row.compression or None,
        "target": row.target or None,
        "download": request.route_url("api.archive.member", id=archive_id, path=row.path),
        "lines": request.route_url("api.archive.lines", id=archive_id, path=row.path)
        if row.kind == "text" else None,
    }


@members.get(permission=Permission.DOWNLOAD)
def list_members(request):
    archive = request.context.archive
    index_row = services.index_of(request, archive)
    limit, offset = paginate(request)
    rows = store.members(request.dbsession, archive.id, limit, offset)
    request.response.headers["X-Archive-Format"] = index_row.format
    if index_row.error:
        # ASCII only in a header; the pages show the full text.
        request.response.headers["X-Index-Incomplete"] = index_row.error.encode(
            "ascii", "replace").decode()
    return paginated(request, rows, index_row.members, limit, offset, serialise_member)


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


@member.get(permission=Permission.DOWNLOAD)
def member_bytes(request):
    archive = request.context.archive
    index_row, row = services.member_of(request, archive, request.matchdict["path"])
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
    response.content_length = row.size
    return response


@lines.get(permission=Permission.DOWNLOAD)
def member_lines(request):
    archive = request.context.archive
    return services.lines(request, archive, request.matchdict["path"], request.GET)


@archive_search.get(permission=Permission.DOWNLOAD)
def search_archive(request):
    params = services.search_params(request.GET)
    return services.search_archive(request, request.context.archive, params)


@ticket_search.get(permission=Permission.DOWNLOAD)
def search_ticket(request):
    params = services.search_params(request.GET)
    ticket = request.context.ticket
    archives = request.dbsession.scalars(
        select(Archive).where(Archive.ticket_id == ticket.id).order_by(Archive.id)).all()
    return services.search_ticket(request, ticket, archives, params)
