"""/api/v1/platforms/ — list and create; /api/v1/platforms/{name}/ — read, change, delete."""

import colander
from cornice import Service
from sqlalchemy import select

from collector.accounts.models import User
from collector.api.v1 import (
    Boolean,
    Integer,
    error_handler,
    json_body,
    no_content,
    paginate,
    paginated,
    partial,
    validate,
)
from collector.errors import BadRequest
from collector.security import Permission
from collector.tickets import services
from collector.tickets.services import PLATFORM_NAME

platforms = Service(name="platforms", pyramid_route="api.platforms",
                    description="Platforms (the vendor's products)", error_handler=error_handler)
platform = Service(name="platform", pyramid_route="api.platform",
                   description="One platform", error_handler=error_handler)


class PlatformSchema(colander.MappingSchema):
    name = colander.SchemaNode(colander.String(), validator=colander.Regex(
        PLATFORM_NAME, "lower-case letters, digits, - and _, at most 20"))
    pretty_name = colander.SchemaNode(colander.String(), validator=colander.Length(1, 100))
    restricted = colander.SchemaNode(Boolean(), missing=False)
    members = colander.SchemaNode(colander.List(), missing=[])
    # Retention overrides: null (or left out) follows the server's setting, 0 keeps forever.
    retention_resolved_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, 36500), missing=None)
    retention_max_days = colander.SchemaNode(
        Integer(), validator=colander.Range(0, 36500), missing=None)


def serialise(request, row):
    return {"id": row.id, "name": row.name, "pretty_name": row.pretty_name,
            "restricted": row.restricted, "members": sorted(_member_names(request, row)),
            "retention_resolved_days": row.retention_resolved_days,
            "retention_max_days": row.retention_max_days}


def _member_names(request, row):
    ids = [m.user_id for m in row.members]
    if not ids:
        return []
    return request.dbsession.scalars(select(User.username).where(User.id.in_(ids))).all()


def _member_ids(request, names):
    if not all(isinstance(name, str) for name in names):
        raise BadRequest("members must be a list of usernames")
    found = dict(request.dbsession.execute(
        select(User.username, User.id).where(User.username.in_(names))).all())
    missing = sorted(set(names) - set(found))
    if missing:
        raise BadRequest(f"members: unknown user(s) {', '.join(missing)}")
    return list(found.values())


@platforms.get(permission=Permission.VIEW)
def list_platforms(request):
    limit, offset = paginate(request)
    rows, total = services.list_platforms(request.dbsession, request.identity.user, limit,
                                          offset)
    return paginated(request, rows, total, limit, offset, serialise)


@platforms.post(permission=Permission.ADMIN)
def create_platform(request):
    data = validate(PlatformSchema(), json_body(request))
    row = services.create_platform(request.dbsession, data["name"], data["pretty_name"],
                                   data["restricted"], _member_ids(request, data["members"]),
                                   data["retention_resolved_days"], data["retention_max_days"])
    request.response.status_int = 201
    return serialise(request, row)


@platform.get(permission=Permission.VIEW)
def get_platform(request):
    return serialise(request, request.context.platform)


RETENTION = ("retention_resolved_days", "retention_max_days")


def _change(request, schema):
    body = json_body(request)
    data = validate(schema, body)
    # PATCH with null: back to the server's setting (colander drops a null as missing).
    data.update({name: None for name in RETENTION if name in body and body[name] is None})
    if "members" in data:
        data["members"] = _member_ids(request, data["members"])
    row = services.update_platform(request.dbsession, request.context.platform, **data)
    return serialise(request, row)


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
