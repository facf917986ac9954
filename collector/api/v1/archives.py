"""/api/v1/archives/ — list, and upload with ``Upload-Token``; one archive; its download."""

from cornice import Service

from collector.api.v1 import (
    error_handler,
    iso,
    json_schema,
    no_content,
    paginate,
    paginated,
)
from collector.archives import commands, services
from collector.archives.download import archive_response
from collector.archives.schemas import ArchivePatchSchema
from collector.archives.uploads import upload_from_request
from collector.errors import Forbidden
from collector.resources import ticket_node
from collector.security import Permission
from collector.tickets import services as tickets
from collector.validation import int_list, parse_time

archives = Service(name="archives", pyramid_route="api.archives",
                   description="Archives; POST uploads one with an Upload-Token",
                   error_handler=error_handler)
archive = Service(name="archive", pyramid_route="api.archive", description="One archive",
                  error_handler=error_handler)
download = Service(name="archive_download", pyramid_route="api.archive.download",
                   description="The archive's bytes (Range supported)",
                   error_handler=error_handler)


def serialise(request, row):
    return {
        "id": row.id,
        "file": request.route_url("api.archive.download", id=row.id, slash=""),
        "ticket": row.ticket.number, "time_create": iso(row.time_create), "name": row.name,
        "size": row.size, "md5": row.md5, "sha256": row.sha256,
    }


def _filters(request):
    params, filters = request.GET, {}
    if "ticket" in params:
        filters["ticket"] = int_list(params["ticket"], "ticket")
    if "id" in params:
        filters["id"] = int_list(params["id"], "id")
    for name in ("time_create__gte", "time_create__lte"):
        if params.get(name):
            filters[name] = parse_time(params[name], name)
    return filters


@archives.get(permission=Permission.VIEW)
def list_archives(request):
    limit, offset = paginate(request)
    rows, total = services.list_archives(request.dbsession, request.identity.user,
                                         _filters(request), limit, offset)
    return paginated(request, rows, total, limit, offset, serialise)


named_upload = Service(name="archive_named_upload", pyramid_route="api.archive.named",
                       description="Upload with the file name in the path (curl -T)",
                       error_handler=error_handler)


@archives.post()
@archives.put()
@named_upload.put()
def upload_archive(request):
    """Upload one archive. PUT is accepted too, because that is what ``curl -T`` sends."""
    # The token rules answer 401/403/423; then the ticket's ACL must grant `upload`.
    ticket = tickets.check_upload_token(request.dbsession, request.headers.get("Upload-Token"),
                                        address=request.remote_addr or "")
    if not request.has_permission(Permission.UPLOAD, ticket_node(request, ticket)):
        raise Forbidden("upload token is not valid for this ticket")
    row = upload_from_request(request, ticket)
    request.response.status_int = 201
    request.response.location = request.route_url("api.archive", id=row.id, slash="/")
    return serialise(request, row)


@archive.get(permission=Permission.VIEW)
def get_archive(request):
    return serialise(request, request.context.archive)


@archive.patch(permission=Permission.EDIT, **json_schema(ArchivePatchSchema()))
def patch_archive(request):
    return serialise(request, commands.change_archive(request, request.context.archive,
                                                      **request.validated))


@archive.delete(permission=Permission.DELETE)
def delete_archive(request):
    services.delete_archive(request.dbsession, request.storage, request.context.archive)
    return no_content(request)


@download.get(permission=Permission.DOWNLOAD)
def download_archive(request):
    return archive_response(request, request.context.archive)
