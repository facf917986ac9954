"""/api/v1/archives/{id}/members/, …/members/{path}, …/lines/{path}, …/search and
/api/v1/tickets/{number}/search: looking inside archives. Every one needs ``download``
(a two-factor verified caller), decided by the archive's or the ticket's node in the tree.
"""

from cornice import Service

from collector.api.v1 import error_handler, iso, paginate, paginated
from collector.archives import services as archives
from collector.archives.inspect import services, store
from collector.archives.inspect.download import member_response
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


@member.get(permission=Permission.DOWNLOAD)
def member_bytes(request):
    return member_response(request, request.context.archive, request.matchdict["path"])


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
    return services.search_ticket(request, ticket,
                                  archives.archives_of_ticket(request.dbsession, ticket),
                                  params)
