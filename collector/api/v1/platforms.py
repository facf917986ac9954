"""/api/v1/platforms/ — list and create; /api/v1/platforms/{name}/ — read, change, delete."""

from cornice import Service

from collector.api.v1 import error_handler, json_body, no_content, paginate, paginated
from collector.security import Permission
from collector.tickets import services
from collector.tickets.schemas import RETENTION, PlatformSchema
from collector.validation import partial, validate

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


@platforms.post(permission=Permission.ADMIN)
def create_platform(request):
    row = services.new_platform(request.dbsession,
                                **validate(PlatformSchema(), json_body(request)))
    request.response.status_int = 201
    return serialise(request, row)


@platform.get(permission=Permission.VIEW)
def get_platform(request):
    return serialise(request, request.context.platform)


def _change(request, schema):
    body = json_body(request)
    data = validate(schema, body)
    # PATCH with null: back to the server's setting (colander drops a null as missing).
    data.update({name: None for name in RETENTION if name in body and body[name] is None})
    return serialise(request, services.change_platform(request.dbsession,
                                                       request.context.platform, **data))


@platform.put(permission=Permission.ADMIN)
def put_platform(request):
    return _change(request, PlatformSchema())


@platform.patch(permission=Permission.ADMIN)
def patch_platform(request):
    return _change(request, partial(PlatformSchema()))


@platform.delete(permission=Permission.ADMIN)
def delete_platform(request):
    services.delete_platform(request.dbsession, request.context.platform)
    return no_content(request)
