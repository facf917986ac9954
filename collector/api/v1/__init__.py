"""REST API v1: cornice services over routes that traverse into the one resource tree.

Each route is declared here with the root factory and a ``traverse`` path, and each cornice
``Service`` names its route with ``pyramid_route=``: the context, and so the ACL, is the
same node the web pages use. Paths keep the original project's trailing slash, and answer
without it too.
"""

import datetime as dt
import urllib.parse

from cornice.validators import colander_body_validator
from pyramid.events import NewRequest

from collector.db import INTEGER_MAX, as_integer
from collector.errors import BadRequest
from collector.resources import root_factory

PREFIX = "/api/v1"

# route name → (path as documented, route pattern, traverse path or None)
ROUTES = {
    "api.index": ("/", "{slash:/?}", None),
    "api.platforms": ("/platforms/", "/platforms{slash:/?}", "/platforms"),
    "api.platform": ("/platforms/{name}/", "/platforms/{name}{slash:/?}", "/platforms/{name}"),
    "api.tickets": ("/tickets/", "/tickets{slash:/?}", "/tickets"),
    "api.ticket": ("/tickets/{number}/", "/tickets/{number}{slash:/?}", "/tickets/{number}"),
    "api.ticket.token": ("/tickets/{number}/token/", "/tickets/{number}/token{slash:/?}",
                         "/tickets/{number}"),
    "api.archives": ("/archives/", "/archives{slash:/?}", "/archives"),
    # `curl -T logs.tgz …/archives/` sends PUT …/archives/logs.tgz: an upload by name.
    # A name of digits only is an archive id (PUT there is not an upload).
    "api.archive.named": ("/archives/{filename}", r"/archives/{filename:.*[^0-9/].*}", None),
    "api.archive": ("/archives/{id}/", "/archives/{id}{slash:/?}", "/archives/{id}"),
    "api.archive.download": ("/archives/{id}/download", "/archives/{id}/download{slash:/?}",
                             "/archives/{id}"),
    # Looking inside an archive (api/v1/inspect.py); a member path may hold slashes.
    "api.archive.members": ("/archives/{id}/members/", "/archives/{id}/members{slash:/?}",
                            "/archives/{id}"),
    "api.archive.member": ("/archives/{id}/members/{path}", "/archives/{id}/members/{path:.+}",
                           "/archives/{id}"),
    "api.archive.lines": ("/archives/{id}/lines/{path}", "/archives/{id}/lines/{path:.+}",
                          "/archives/{id}"),
    "api.archive.search": ("/archives/{id}/search", "/archives/{id}/search{slash:/?}",
                           "/archives/{id}"),
    "api.ticket.search": ("/tickets/{number}/search", "/tickets/{number}/search{slash:/?}",
                          "/tickets/{number}"),
    # tus 1.0 resumable uploads (api/v1/uploads.py); an upload's URL has no trailing slash.
    "api.uploads": ("/uploads/", "/uploads{slash:/?}", "/uploads"),
    "api.upload": ("/uploads/{id}", "/uploads/{id}{slash:/?}", "/uploads/{id}"),
    "api.check.health": ("/check/health/", "/check/health{slash:/?}", None),
    "api.check.storage": ("/check/storage/", "/check/storage{slash:/?}", None),
    "api.check.token": ("/check/token/{token}", "/check/token/{token}{slash:/?}", None),
    "api.auth.token": ("/auth/token/", "/auth/token{slash:/?}", None),
    "api.auth.refresh": ("/auth/token/refresh/", "/auth/token/refresh{slash:/?}", None),
    "api.auth.verify": ("/auth/token/verify/", "/auth/token/verify{slash:/?}", None),
    "api.auth.revoke": ("/auth/token/revoke/", "/auth/token/revoke{slash:/?}", None),
    "api.auth.tokens": ("/auth/tokens/", "/auth/tokens{slash:/?}", "/tokens"),
    "api.auth.personal": ("/auth/tokens/{id}/", "/auth/tokens/{id}{slash:/?}", "/tokens"),
    "api.openapi": ("/openapi.json", "/openapi.json", None),
    # The audit log lives under the tree's Admin node: one ACL for the page and the API.
    "api.audit": ("/audit/", "/audit{slash:/?}", "/admin"),
    # Help-desk webhooks, under the same Admin node; the deliveries route comes before
    # the item route, whose {id} would take "deliveries".
    "api.webhooks": ("/webhooks/", "/webhooks{slash:/?}", "/admin/webhooks"),
    "api.webhook.deliveries": ("/webhooks/deliveries/", "/webhooks/deliveries{slash:/?}",
                               "/admin/webhooks"),
    "api.webhook.redeliver": ("/webhooks/deliveries/{id}/redeliver",
                              "/webhooks/deliveries/{id}/redeliver{slash:/?}", "/admin/webhooks"),
    "api.webhook": ("/webhooks/{id}/", "/webhooks/{id}{slash:/?}", "/admin/webhooks/{id}"),
    # Any user's bearer tokens, for admins: the tree's UserNode, as /admin/users/{id}/.
    # The revoke-all route comes before the item route, whose {token_id} would take it.
    "api.user.tokens": ("/users/{id}/tokens/", "/users/{id}/tokens{slash:/?}",
                        "/admin/users/{id}"),
    "api.user.tokens.revoke": ("/users/{id}/tokens/revoke/",
                               "/users/{id}/tokens/revoke{slash:/?}", "/admin/users/{id}"),
    "api.user.token": ("/users/{id}/tokens/{token_id}/", "/users/{id}/tokens/{token_id}{slash:/?}",
                       "/admin/users/{id}"),
}

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def includeme(config):
    for name, (_, pattern, traverse) in ROUTES.items():
        kwargs = {"traverse": traverse} if traverse else {}
        if name == "api.archive.named":
            kwargs["request_method"] = "PUT"
        config.add_route(name, PREFIX + pattern, factory=root_factory, **kwargs)
    config.add_subscriber(refuse_nul, NewRequest)


def _has_nul(value):
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def refuse_nul(event):
    """400 for a NUL character in an API request's path, query or JSON body: no text column
    can hold one (PostgreSQL refuses it), and no name, note or search needs one."""
    request = event.request
    if not (request.path_info + "/").startswith(PREFIX + "/"):
        return
    try:
        query = list(request.GET.items())
    except UnicodeDecodeError:
        raise BadRequest("the query string is not UTF-8") from None
    # An upload's name (``?filename=``, ``PUT …/archives/{filename}``) is sanitised, NUL
    # included, by the upload itself (tests/functional/test_hostile_files.py).
    query = [(k, v) for k, v in query if k != "filename"]
    # So is a new name sent with PATCH …/archives/{id}/.
    upload = request.method in {"PUT", "PATCH"} and \
        request.path_info.startswith(PREFIX + "/archives/")
    if (not upload and _has_nul(request.path_info)) or _has_nul(dict(query)) \
            or _has_nul([k for k, _ in query]):
        raise BadRequest("NUL characters are not accepted")
    if request.content_type == "application/json" and request.body and not upload:
        try:
            body = request.json_body
        except ValueError:
            return  # the view answers 400 for JSON it cannot read
        if _has_nul(body):
            raise BadRequest("NUL characters are not accepted")


# --- shared helpers of the v1 services ----------------------------------------------------

def error_handler(request):
    """Cornice's own errors (405, 406, 415 …) in the shape of ours: ``detail``, ``errors``."""
    errors = list(request.errors)
    first = errors[0] if errors else {}
    detail = f"{first.get('name') or first.get('location', 'request')}: " \
             f"{first.get('description', 'invalid')}" if first else "invalid request"
    response = request.response
    response.status_int = request.errors.status
    response.content_type = "application/json"
    response.json_body = {"detail": detail, "errors": errors}
    return response


def json_body(request):
    """The JSON body, whatever the Content-Type (scripts written for the original API send
    JSON as a form's type); an empty body is ``{}``."""
    if not request.body:
        return {}
    try:
        return request.json_body
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None


def _json_cstruct(request):
    """What cornice's colander validator reads: the JSON object sent."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return {"body": body}


def body_validator(request, **kwargs):
    """cornice ``validators=``: the method's colander ``schema=`` applied to the JSON body;
    its fields land in ``request.validated``, its refusals in ``request.errors``, which
    ``error_handler`` answers (400, ``detail`` and ``errors``)."""
    kwargs.pop("deserializer", None)
    colander_body_validator(request, deserializer=_json_cstruct, **kwargs)


def json_schema(schema):
    """The arguments of a cornice method whose JSON body ``schema`` validates (and the
    OpenAPI document describes: api/v1/openapi_schema.py)."""
    return {"schema": schema, "validators": (body_validator,)}


def paginate(request):
    """``limit`` and ``offset`` from the query string (bounded)."""
    params = request.GET
    limit = as_integer(params.get("limit", DEFAULT_LIMIT), 1, MAX_LIMIT)
    offset = as_integer(params.get("offset", 0), 0)
    if limit is None or offset is None:
        raise BadRequest(f"limit must be an integer 1..{MAX_LIMIT} and offset one "
                         f"0..{INTEGER_MAX}")
    return limit, offset


def paginated(request, rows, total, limit, offset, serialise):
    """A plain JSON list, with ``X-Total-Count`` and RFC 8288 ``Link`` headers."""
    response = request.response
    response.headers["X-Total-Count"] = str(total)
    links = []
    base = request.path_url

    def link(new_offset, rel):
        query = dict(request.GET)
        query.update(limit=str(limit), offset=str(new_offset))
        links.append(f'<{base}?{urllib.parse.urlencode(query)}>; rel="{rel}"')

    if offset + limit < total:
        link(offset + limit, "next")
    if offset > 0:
        link(max(offset - limit, 0), "prev")
    link(0, "first")
    link(max((total - 1) // limit * limit, 0), "last")
    response.headers["Link"] = ", ".join(links)
    return [serialise(request, row) for row in rows]


def no_content(request):
    """204 with no body and no Content-Type."""
    response = request.response
    response.status_int = 204
    response.content_type = None
    return response


def iso(value):
    """ISO 8601 in UTC with a ``Z``; values read from the database are UTC already."""
    if not value:
        return None
    if value.tzinfo is not dt.UTC:
        value = value.astimezone(dt.UTC)
    return value.isoformat()[:-6] + "Z"
