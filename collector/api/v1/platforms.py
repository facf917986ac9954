"""/api/v1/platforms/ — list and create; /api/v1/platforms/{name}/ — read, change, delete."""

from cornice import Service

from collector.api.v1 import (
    error_handler,
    json_body,
    json_schema,
    no_content,
    paginate,
    paginated,
)
from collector.security import Permission
from collector.tickets import services
from collector.tickets.schemas import RETENTION, PlatformSchema
from collector.validation import partial

platforms = Service(name="platforms", pyramid_route="api.platforms",
                    description="Platforms (the vendor's products)", error_handler=error_handler)
platform = Service(name="platform", pyramid_route="api.platform",
                   description="One platform", error_handler=error_handler)


def serialise(request, row):
    return {"id": row.id, "name": row.name, "pretty_name": row.pretty_name,
            "restricted": row.restricted,
            "members": sorted(user.username for user in
                              services.members_of(request.dbsession, row)),
            "retention_resolved_days": row.retention_resolved_days,
            "retention_max_days": row.retention_max_days}


@platforms.get(permission=Permission.VIEW)
def list_platforms(request):
    limit, offset = paginate(request)
    rows, total = services.list_platforms(request.dbsession, request.identity.user, limit,
                                          offset)
    return paginated(request, rows, total, limit, offset, serialise)


@platforms.post(permission=Permission.ADMIN, **json_schema(PlatformSchema()))
def create_platform(request):
    row = services.new_platform(request.dbsession, **request.validated)
    request.response.status_int = 201
    return serialise(request, row)


@platform.get(permission=Permission.VIEW)
def get_platform(request):
    return serialise(request, request.context.platform)


@platform.put(permission=Permission.ADMIN, **json_schema(PlatformSchema()))
@platform.patch(permission=Permission.ADMIN, **json_schema(partial(PlatformSchema())))
def change_platform(request):
    data, body = dict(request.validated), json_body(request)
    # PATCH with null: back to the server's setting (colander drops a null as missing).
    data.update({name: None for name in RETENTION if name in body and body[name] is None})
    return serialise(request, services.change_platform(request.dbsession,
                                                       request.context.platform, **data))


@platform.delete(permission=Permission.ADMIN)
def delete_platform(request):
    services.delete_platform(request.dbsession, request.context.platform)
    return no_content(request)
