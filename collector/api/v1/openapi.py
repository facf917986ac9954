"""/api/v1/openapi.json — the OpenAPI 3.1 document of every v1 endpoint.

The JSON request bodies are generated from the colander schemas the services validate
with (``openapi_schema.request_body``; ``REQUEST_BODIES`` below), so the document says
exactly what the API accepts; ``tests/functional/test_openapi_requests.py`` sends each
schema's generated cases to the API and to the document and requires the same answer.
The rest is written by hand: the answers (the services' serialisers), the parameters and
headers (tus above all), the error statuses and the words. ``tests/functional/
test_openapi.py`` checks that every cornice service and method appears here, that nothing
appears here that no service serves, and that real answers match the schemas.
"""

import copy
import functools

from cornice import Service
from pyramid.security import NO_PERMISSION_REQUIRED

from collector.accounts.schemas import (
    Credentials,
    PersonalTokenSchema,
    RefreshSchema,
    RevokeAllSchema,
    TokenSchema,
)
from collector.api.v1 import DEFAULT_LIMIT, MAX_LIMIT, PREFIX, ROUTES, error_handler
from collector.api.v1.openapi_schema import request_body
from collector.archives.schemas import ArchivePatchSchema
from collector.db import INTEGER_MAX, INTEGER_MIN
from collector.tickets.schemas import PlatformSchema, TicketSchema
from collector.tickets.services import PLATFORM_NAME
from collector.validation import partial
from collector.webhooks.schemas import WebhookSchema

openapi = Service(name="openapi", pyramid_route="api.openapi",
                  description="The OpenAPI 3.1 document of API v1", error_handler=error_handler)

# --- building blocks ----------------------------------------------------------------------

STRING, INTEGER, BOOLEAN = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
# Ids and numbers sent by a client: what an INTEGER column holds (collector.db.as_integer).
ID = {**INTEGER, "minimum": INTEGER_MIN, "maximum": INTEGER_MAX}
TIME = {"type": "string", "format": "date-time"}
TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
# sha256 is the integrity check; md5 is kept for the original API's field, and hashing it
# is left out of the upload's critical path above 4 MiB.
MD5 = {"type": ["string", "null"], "pattern": "^[0-9a-f]{32}$",
       "description": "Hex md5: computed in the background after the upload for archives "
                      "over 4 MiB; null until then"}
BINARY = {"type": "string", "contentMediaType": "application/octet-stream"}


def ref(name, kind="schemas"):
    return {"$ref": f"#/components/{kind}/{name}"}


def obj(properties, required=(), **extra):
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def returned(properties, **extra):
    """A response object: every field is always present."""
    return obj(properties, properties, **extra)


def json_content(schema):
    return {"application/json": {"schema": schema}}


def answer(description, schema=None, headers=None, content=None):
    response = {"description": description}
    if schema is not None:
        content = json_content(schema)
    if content is not None:
        response["content"] = content
    if headers:
        response["headers"] = headers
    return response


# Error answers: all are {"detail": …}; validation failures add the `errors` list.
ERRORS = {
    400: "Bad request: invalid JSON, parameters or fields (see `detail` and `errors`)",
    401: "No credentials, or invalid or expired ones",
    403: "Not allowed: permission, platform restriction, missing two-factor, or CSRF",
    404: "No such resource (or not visible to the caller)",
    409: "Conflicts with an existing resource",
    413: "The archive is larger than the upload limit",
    422: "The archive or member cannot be read: damaged, truncated, binary, or over a "
         "reading limit (see `detail`)",
    423: "The upload token is unusable: ticket resolved, token expired or out of attempts; "
         "or the ticket is under legal hold (no deletion)",
    429: "Too many failed attempts from this client: sign-ins, or unknown upload tokens "
         "(every upload-token check, `/check/token/` included, answers this until the "
         "window has passed); retry after `Retry-After` seconds",
    503: "The database is unavailable, or the archive's member index is being built; retry "
         "after `Retry-After` seconds",
    507: "Not enough free space on the server",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying",
                               "schema": INTEGER}}
OCTETS = {"application/octet-stream": {"schema": BINARY}}
FILE_HEADERS = {
    "Content-Disposition": {"description": "RFC 6266, the name as UTF-8 `filename*`",
                            "schema": STRING},
    "ETag": {"description": "The sha256, quoted", "schema": STRING},
    "Last-Modified": {"schema": STRING},
    "Accept-Ranges": {"schema": {"const": "bytes"}},
    "Content-Length": {"schema": INTEGER},
}
LIST_HEADERS = {"X-Total-Count": ref("X-Total-Count", "headers"),
                "Link": ref("Link", "headers")}


def operation(operation_id, summary, ok, errors=(), *, description=None, parameters=(),
              body=None, security=None):
    """One operation; ``ok`` maps the success status to its response object."""
    op = {"operationId": operation_id, "summary": summary}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = list(parameters)
    if body is not None:
        op["requestBody"] = body
    responses = {str(status): response for status, response in ok.items()}
    # Any request that touches the database may find it down: 503 on every operation; and
    # any may carry a NUL character, refused with 400 (collector.api.v1.refuse_nul).
    for status in sorted({*errors, 400, 503}):
        responses[str(status)] = ref(str(status), "responses")
    op["responses"] = responses
    if security is not None:
        op["security"] = security
    return op


def json_body(schema):
    return {"required": True, "content": json_content(schema)}


PUBLIC = []
UPLOADER = [{"uploadToken": []}]
# Staff: the default of the document (`security` at the top level).
STAFF = [{"bearer": []}, {"session": []}]

# --- schemas (the serialisers and colander schemas of the service modules) ----------------

SCHEMAS = {
    "Error": obj({
        "detail": {**STRING, "description": "What went wrong, for a person"},
        "errors": {"type": "array", "description": "Each invalid field (validation only)",
                   "items": obj({"location": STRING, "name": STRING, "description": STRING},
                                ["location", "name", "description"])},
    }, ["detail"]),
    "Platform": returned({
        "id": INTEGER,
        "name": {**STRING, "pattern": PLATFORM_NAME.pattern},
        "pretty_name": STRING,
        "restricted": {**BOOLEAN, "description": "Only members and admins see it"},
        "members": {"type": "array", "items": STRING, "description": "Usernames"},
        "retention_resolved_days": {"type": ["integer", "null"], "description":
                                    "Days after resolution its archives are kept; null: "
                                    "the server's RETENTION_RESOLVED_DAYS, 0: forever"},
        "retention_max_days": {"type": ["integer", "null"], "description":
                               "Days after upload its archives are kept; null: the "
                               "server's RETENTION_MAX_DAYS, 0: forever"},
    }),
    "Ticket": returned({
        "id": INTEGER,
        "number": {**INTEGER, "description": "The help-desk case number"},
        "resolved": BOOLEAN,
        "token": {**STRING, "description": "The upload token"},
        "attempts": {**INTEGER, "description": "Uploads left"},
        "platform": {**STRING, "description": "Platform name"},
        "time_create": TIME,
        "time_update": TIME_OR_NULL,
        "user": {"type": ["string", "null"], "description": "Who created it"},
        "note": STRING,
        "expires_at": {**TIME, "description": "The upload token is refused from then on"},
        "legal_hold": {**BOOLEAN, "description": "Its archives are kept: no retention rule "
                       "and no deletion (423) until an admin lifts it"},
        "resolved_at": {**TIME_OR_NULL, "description": "When it was resolved (retention "
                        "counts from it)"},
    }),
    "Archive": returned({
        "id": INTEGER,
        "file": {**STRING, "format": "uri", "description": "Download URL"},
        "ticket": {**INTEGER, "description": "Ticket number"},
        "time_create": TIME,
        "name": {**STRING, "description": "Original file name (sanitised)"},
        "size": {**INTEGER, "minimum": 1, "description": "Bytes"},
        "md5": MD5,
        "sha256": {**STRING, "pattern": "^[0-9a-f]{64}$"},
    }),
    "TokenPair": returned({
        "access": {**STRING, "description": "Bearer token for the Authorization header"},
        "refresh": {**STRING, "description": "Exchange it at /auth/token/refresh/"},
    }),
    "TokenVerification": returned({
        "valid": {"const": True},
        "kind": {"enum": ["access", "refresh", "personal"]},
        "user": STRING,
        "expires_at": TIME_OR_NULL,
    }),
    "PersonalToken": returned({
        "id": INTEGER, "name": STRING, "time_create": TIME, "expires_at": TIME_OR_NULL,
        "mfa": {**BOOLEAN, "description": "Minted by a two-factor verified caller"},
        "last_used_at": {**TIME_OR_NULL,
                         "description": "Last authenticated request (to the minute)"},
    }),
    "UserToken": returned({
        "id": INTEGER,
        "kind": {"enum": ["access", "refresh", "personal"],
                 "description": "access and refresh: from a sign-in at /auth/token/; "
                                "personal: made on purpose"},
        "name": {**STRING, "description": "Empty for access and refresh tokens"},
        "time_create": TIME, "expires_at": TIME_OR_NULL,
        "last_used_at": {**TIME_OR_NULL,
                         "description": "Last authenticated request (to the minute)"},
        "mfa": {**BOOLEAN, "description": "Minted after two-factor"},
    }),
    "RevokedTokens": returned({
        "revoked": {**INTEGER, "minimum": 0, "description": "Tokens revoked now"},
        "keep_personal_tokens": BOOLEAN,
    }),
    "AuditEvent": returned({
        "id": INTEGER, "time": TIME,
        "actor": {"type": ["string", "null"], "description": "Username; null for an "
                  "uploader or the console"},
        "actor_id": {"type": ["integer", "null"]},
        "action": {**STRING, "description": "e.g. `signin.failure`, `ticket.resolve`, "
                   "`upload.refused`, `archive.download`"},
        "ticket": {"type": ["integer", "null"], "description": "Ticket number"},
        "ticket_id": {"type": ["integer", "null"]},
        "archive": {"type": ["integer", "null"], "description": "Archive id"},
        "client_address": STRING, "user_agent": STRING,
        "outcome": {"enum": ["ok", "refused", "failed"]},
        "reason": {**STRING, "description": "Why it was refused or failed: a stable code, "
                   "e.g. `token_unknown`, `token_expired`, `no_attempts`, `ticket_resolved`, "
                   "`legal_hold`, `too_large`, `no_space`, `client_gone`"},
        "detail": {"type": "object", "description": "e.g. size, sha256, a token's hint"},
    }),
    "NewPersonalToken": {"allOf": [ref("PersonalToken"), returned({
        "token": {**STRING, "description": "The secret; shown this once only"}})]},
    "TokenState": returned({
        "token": STRING,
        "ticket": {**INTEGER, "description": "The number of the ticket the token uploads to"},
        "attempts": INTEGER, "resolved": BOOLEAN, "expires_at": TIME,
        "valid": {**BOOLEAN, "description": "Whether an upload would be accepted now"},
        "reason": {"enum": ["ticket_resolved", "no_attempts", "token_expired", None],
                   "description": "Why not, as a stable code; null when valid"},
        "detail": {**STRING, "description": "Why not, or `token is valid`"},
        "resumable": {"type": "array", "description": "Uploads of this ticket that can still "
                      "be finished with this token (tus: resume them), most recently moved "
                      "first; each holds the attempt it reserved, so they are listed even "
                      "when `valid` is false for `no_attempts`. Empty once the ticket is "
                      "resolved or the token expired. Partial (concatenation) uploads are "
                      "not listed.",
                      "items": returned({
                          "name": {**STRING, "description": "The file name it was created "
                                   "with (Upload-Metadata `filename`)"},
                          "size": {"type": ["integer", "null"], "description": "Its "
                                   "Upload-Length; null while the length is deferred"},
                          "received": {**INTEGER, "description": "Bytes the server has "
                                       "(its Upload-Offset)"},
                          "expires_at": {**TIME, "description": "When the server forgets "
                                         "it unless more bytes arrive"}})},
    }),
    "Index": returned({
        "service": STRING, "api": STRING, "openapi": STRING, "health": STRING,
        "docs": {**STRING, "description": "The API explorer (Swagger UI over this document)"},
    }),
    "Health": returned({
        "status": {"enum": ["ok", "error"]},
        "database": {"enum": ["ok", "unavailable"]},
        "storage": {"enum": ["ok", "not writable"]},
    }),
    "Liveness": returned({"status": {"const": "ok"}}),
    "Readiness": obj({
        "status": {"enum": ["ok", "error", "draining"]},
        "database": {"enum": ["ok", "unavailable"]},
        "storage": {"enum": ["ok", "not writable"]},
    }, ["status"], description="`draining`: the server is stopping (SIGTERM); only "
                               "`status` is sent then"),
    "Storage": returned({
        "total": INTEGER, "used": INTEGER, "free": INTEGER,
        "used_percent": {"type": "number", "minimum": 0, "maximum": 100},
        "reserve": {**INTEGER, "description": "Bytes always kept free"},
        "status": {"enum": ["ok", "low", "full"]},
    }),
}

# Request bodies: generated from the colander schemas the services validate with
# (cornice's ``schema=``), so the document says what the API accepts.
REQUEST_BODIES = {
    "PlatformInput": PlatformSchema(), "TicketInput": TicketSchema(),
    "ArchivePatch": ArchivePatchSchema(), "Credentials": Credentials(),
    "RefreshInput": RefreshSchema(), "TokenInput": TokenSchema(),
    "PersonalTokenInput": PersonalTokenSchema(), "RevokeTokensInput": RevokeAllSchema(),
    "WebhookInput": WebhookSchema(),
}
SCHEMAS.update({name: request_body(schema) for name, schema in REQUEST_BODIES.items()})


def patch_body(schema):
    """A PATCH body: the schema with every field optional, as its service validates it."""
    return json_body(request_body(partial(schema)))


WEBHOOK_EVENTS = {"enum": ["archive.uploaded", "upload.failed", "ticket.resolved",
                           "storage.low"]}
SCHEMAS.update({
    "Webhook": returned({
        "id": INTEGER,
        "platform": {**STRING, "description": "Platform name: its tickets' events are sent"},
        "url": {**STRING, "format": "uri"},
        "secret": {**STRING, "description": "The HMAC-SHA256 key of the signature header"},
        "active": BOOLEAN,
        "time_create": TIME,
    }),
    "WebhookDelivery": returned({
        "id": INTEGER,
        "webhook": {**INTEGER, "description": "Webhook id"},
        "event": WEBHOOK_EVENTS,
        "event_id": {**STRING, "description": "The same on every retry "
                     "(`X-Collector-Delivery`)"},
        "state": {"enum": ["pending", "delivered", "failed"]},
        "attempts": {**INTEGER, "minimum": 0},
        "next_attempt_at": {**TIME_OR_NULL, "description": "While pending"},
        "last_status": {"type": ["integer", "null"],
                        "description": "The receiver's last HTTP status; null: no answer"},
        "last_error": STRING,
        "delivered_at": TIME_OR_NULL,
        "time_create": TIME,
        "payload": {"type": "object", "description": "The JSON body sent"},
        "attempt_log": {"type": "array", "items": returned({
            "time": TIME, "status": {"type": ["integer", "null"]}, "error": STRING,
            "duration_ms": INTEGER})},
    }),
})

LINE = obj({"line": {**INTEGER, "minimum": 1}, "text": STRING,
            "cut": {**BOOLEAN, "description": "Only part of the line is shown"}},
           ["line", "text", "cut"])
SCHEMAS.update({
    "Member": returned({
        "path": {**STRING, "description": "Normalised: no `..`, no leading `/`; unique"},
        "name": {**STRING, "description": "The name exactly as the archive stores it"},
        "size": {**INTEGER, "minimum": 0, "description": "Bytes as stored"},
        "mtime": TIME_OR_NULL,
        "kind": {"enum": ["text", "binary", "link", "empty"]},
        "compression": {"enum": ["gz", "bz2", "xz", "zst", None],
                        "description": "The member is itself compressed; shown decompressed"},
        "target": {"type": ["string", "null"], "description": "A link's target"},
        "download": {**STRING, "format": "uri"},
        "lines": {"type": ["string", "null"], "format": "uri",
                  "description": "The viewer's lines of a text member"},
    }),
    "Lines": returned({
        "path": STRING, "size": INTEGER,
        "compression": {"type": ["string", "null"]},
        "start": {**INTEGER, "minimum": 1}, "count": {**INTEGER, "minimum": 0},
        "total_lines": {"type": ["integer", "null"],
                        "description": "Known when the end was reached (always with `tail`)"},
        "more": {**BOOLEAN, "description": "Lines follow this page"},
        "lines": {"type": "array", "items": obj({
            "line": INTEGER, "text": {**STRING, "description": "Undecodable bytes as `\\xNN`"},
            "length": {**INTEGER, "description": "Bytes of the whole line"},
            "cut": {**BOOLEAN, "description": "Longer than the 4096 bytes shown"}},
            ["line", "text", "length", "cut"])},
    }),
    "SearchMember": returned({
        "path": STRING, "compression": {"type": ["string", "null"]},
        "hits": {"type": "array", "items": {"allOf": [LINE, obj({
            "match": {"type": "array", "items": INTEGER, "minItems": 2, "maxItems": 2,
                      "description": "Start and end of the match in `text` (characters)"},
            "before": {"type": "array", "items": LINE},
            "after": {"type": "array", "items": LINE}}, ["match", "before", "after"])]}},
    }),
    "SearchError": returned({"path": {"type": ["string", "null"]}, "detail": STRING}),
})
SEARCH_SUMMARY = {
    "q": STRING,
    "results": {**INTEGER, "description": "Matching lines returned"},
    "bytes_scanned": {**INTEGER, "description": "Uncompressed bytes searched"},
    "truncated": {**BOOLEAN, "description": "A cap stopped the search early"},
    "reason": {"enum": ["limit", "bytes", "time", None],
               "description": "Which cap: results, bytes scanned or time"},
    "elapsed": {"type": "number", "description": "Seconds"},
    "limits": returned({"results": INTEGER, "bytes": INTEGER, "seconds": {"type": "number"}}),
}
SCHEMAS["ArchiveSearch"] = returned({
    "archive": INTEGER, "name": STRING,
    "members": {"type": "array", "items": ref("SearchMember")},
    "errors": {"type": "array", "items": ref("SearchError"),
               "description": "Members or parts that could not be read"},
    **SEARCH_SUMMARY})
SCHEMAS["TicketSearch"] = returned({
    "ticket": INTEGER,
    "archives": {"type": "array", "items": returned({
        "id": INTEGER, "name": STRING,
        "members": {"type": "array", "items": ref("SearchMember")},
        "errors": {"type": "array", "items": ref("SearchError")},
        "building": {**BOOLEAN, "description": "Its member index is being built: not "
                     "searched yet; ask again after a few seconds"}})},
    **SEARCH_SUMMARY})

# --- parameters -----------------------------------------------------------------------------


def query(name, schema, description, **extra):
    return {"name": name, "in": "query", "schema": schema, "description": description,
            **extra}


def header(name, schema, description, required=False):
    return {"name": name, "in": "header", "schema": schema, "description": description,
            "required": required}


def comma_list(name, description):
    return query(name, {"type": "array", "items": ID}, description, style="form",
                 explode=False)


TIME_BOUND = {"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}],
              "description": "ISO 8601; without an offset it means UTC"}
PARAMETERS = {
    "limit": query("limit", {**INTEGER, "minimum": 1, "maximum": MAX_LIMIT,
                             "default": DEFAULT_LIMIT}, "Page size"),
    "offset": query("offset", {**INTEGER, "minimum": 0, "maximum": INTEGER_MAX, "default": 0},
                    "Items to skip"),
    "time_create__gte": query("time_create__gte", TIME_BOUND, "Created at or after"),
    "time_create__lte": query("time_create__lte", TIME_BOUND, "Created at or before"),
    "Upload-Token": header("Upload-Token", STRING, "The ticket's upload token", True),
}
PAGE = [ref("limit", "parameters"), ref("offset", "parameters")]
TIME_BOUNDS = [ref("time_create__gte", "parameters"), ref("time_create__lte", "parameters")]

# The template variables of ROUTES' paths.
PATH_PARAMETERS = {
    "name": {**STRING, "pattern": PLATFORM_NAME.pattern},
    "number": ID,
    "id": ID,
    # Digits only name an archive (`/archives/{id}`): the route asks for another character.
    "filename": {**STRING, "pattern": "[^0-9/]",
                 "description": "Stored as the archive's name; not digits only"},
    "token": {**STRING, "description": "An upload token"},
    "path": {**STRING, "description": "A member's `path` as listed (slashes stay as they are)"},
    "token_id": {**ID, "description": "An API token's `id` (never its secret)"},
}

# --- the operations, by route name and method ----------------------------------------------

WRITE = (400, 401, 403, 404, 409)
ITEM = (401, 403, 404)


def _list(name, schema, filters):
    return operation(f"list{name}", f"List {name.lower()} the caller may view",
                     {200: answer("One page, newest or alphabetical first",
                                  {"type": "array", "items": ref(schema)}, LIST_HEADERS)},
                     (400, 401, 403), parameters=[*filters, *PAGE])


def _label(name):
    """``PersonalToken`` → ``personal token``."""
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


def _one(verb, name, schema, errors=ITEM, status=200, description=None, **kwargs):
    label = _label(name)
    article = "an" if label[0] in "aeiou" else "a"
    summary = f"{verb.capitalize()} {article} {label}" if status == 201 else \
        f"{verb.capitalize()} the {label}"
    return operation(f"{verb}{name}", summary, {status: answer(f"The {label}", ref(schema))},
                     errors, description=description, **kwargs)


def _delete(name, errors=ITEM, description=None):
    return operation(f"delete{name}", f"Delete the {_label(name)}", {204: answer("Deleted")},
                     errors, description=description)


UPLOAD = operation(
    "uploadArchive", "Upload an archive to the ticket of the Upload-Token",
    {201: answer("Stored", ref("Archive"), {"Location": {
        "description": "The new archive", "schema": {**STRING, "format": "uri"}}})},
    (400, 401, 403, 413, 423, 429, 507),
    description="As multipart/form-data with a `file` field, or the raw bytes as the body "
                "(name from `?filename=`, `Content-Disposition` or the path). One of the "
                "ticket's attempts is spent only when the archive is stored. PUT is accepted "
                "too, as `curl -T` sends it.",
    parameters=[ref("Upload-Token", "parameters"),
                query("filename", STRING, "File name of a raw-body upload"),
                header("Content-Disposition", STRING, "May carry the file name of a raw body")],
    body={"required": True, "content": {
        "multipart/form-data": {"schema": obj({"file": BINARY}, ["file"])},
        "application/octet-stream": {"schema": BINARY}}},
    security=UPLOADER)

# --- tus 1.0.0 (api/v1/uploads.py) ---------------------------------------------------------

TUS_RESUMABLE = header("Tus-Resumable", {"const": "1.0.0"}, "The tus protocol version", True)
TUS_STATE = {
    "Tus-Resumable": {"schema": {"const": "1.0.0"}},
    "Upload-Offset": {"description": "Bytes received, fsynced and committed",
                      "schema": {**INTEGER, "minimum": 0}},
    "Upload-Expires": {"description": "When an unfinished upload is removed (RFC 7231 date)",
                       "schema": STRING},
}
ARCHIVE_ID_HEADER = {"Upload-Archive-Id": {
    "description": "The id of the archive the finished upload became", "schema": INTEGER}}
RECEIPT_HEADERS = {
    "Upload-Receipt-Sha256": {"description": "The archive's sha256 (hex)", "schema": STRING},
    "Upload-Receipt-Md5": {"description": "The archive's md5 (hex); absent while it is "
                           "being computed (archives over 4 MiB: read it later from "
                           "`GET /api/v1/uploads/{id}` or the archive)", "schema": STRING},
    "Upload-Receipt-Size": {"description": "The archive's size in bytes", "schema": INTEGER},
}
TUS_ERRORS = {
    "409": answer("`Upload-Offset` differs from the upload's offset, or another request is "
                  "writing to it", ref("Error")),
    "410": answer("The upload has expired", ref("Error")),
    "412": answer("`Tus-Resumable: 1.0.0` missing", ref("Error"),
                  {"Tus-Version": {"schema": STRING}}),
    "415": answer("A chunk must be `application/offset+octet-stream`", ref("Error")),
    "460": answer("`Upload-Checksum` does not match the chunk; it was discarded and the "
                  "offset is unchanged", ref("Error")),
}
CHUNK = {"required": False, "content": {"application/offset+octet-stream": {
    "schema": BINARY}}}
CHUNK_HEADERS = [header("Upload-Checksum", STRING,
                        "`sha1|md5|sha256 <base64 digest>` of this chunk (400 if the "
                        "algorithm is unknown)")]
RECEIPT = obj({"id": INTEGER, "ticket": INTEGER, "name": STRING, "size": INTEGER,
               "sha256": STRING, "md5": MD5, "time_create": TIME,
               "file": {**STRING, "format": "uri"}},
              ["id", "ticket", "name", "size", "sha256", "md5", "time_create", "file"],
              description="The receipt of a finished upload: the archive it became")


def _tus(operation_id, summary, ok, errors, tus_errors, **kwargs):
    op = operation(operation_id, summary, ok, errors, security=UPLOADER, **kwargs)
    op["parameters"] = [TUS_RESUMABLE, ref("Upload-Token", "parameters"),
                        *op.get("parameters", [])]
    op["responses"].update({status: TUS_ERRORS[status] for status in tus_errors})
    return op


# OPTIONS is a plain Pyramid view (not a cornice method, see api/v1/uploads.py); the
# test of this document finds it among the registered views.
_DISCOVERY = {204: answer(
    "What this server supports",
    headers={name: {"description": text, "schema": STRING} for name, text in (
        ("Tus-Version", "`1.0.0`"),
        ("Tus-Max-Size", "The largest `Upload-Length` accepted (UPLOAD_MAX_SIZE)"),
        ("Tus-Extension", "creation, creation-with-upload, creation-defer-length, "
                          "termination, checksum, expiration, concatenation"),
        ("Tus-Checksum-Algorithm", "sha1, md5, sha256"))})}

def _receipt_errors(op):
    op["responses"].update({
        "409": answer("The upload is not finished (or is a partial upload)", ref("Error")),
        "410": answer("The upload expired unfinished, or its archive was deleted",
                      ref("Error"))})
    return op


TUS_OPERATIONS = {
    "api.uploads": {
        "options": operation(
            "discoverUploads", "The tus versions, extensions and limits of this server",
            _DISCOVERY, description="No token and no `Tus-Resumable` needed. `uploader.sh` "
                                    "asks this first and falls back to a single POST "
                                    "when it gets no `Tus-Version`.",
            security=PUBLIC),
        # 201 either way (tus), empty unless the upload is finished: OpenAPI cannot mark a
        # response body optional, so the receipt is named in words, not as content.
        "post": _tus(
            "createUpload", "Create a resumable upload (tus creation)",
            {201: answer("Created; `Location` is the upload's URL. No body, unless the body "
                         "sent completed the upload (or it was a final concatenation): "
                         "then the receipt as JSON, as `getUploadReceipt` answers it, "
                         "and its headers, as `appendChunk` gives them",
                         headers={**TUS_STATE, "Location": {"schema": {
                             **STRING, "format": "uri"}}})},
            (400, 401, 403, 413, 423, 429, 507), ("410", "412", "415", "460"),
            description="`Upload-Length` (or `Upload-Defer-Length: 1`), `Upload-Metadata` "
                        "(`filename`, `filetype`: the archive's name), `Upload-Concat: "
                        "partial` or `final;<url> <url> …`. Reserves one of the ticket's "
                        "attempts, except for partial uploads (their final upload spends "
                        "it).",
            parameters=[header("Upload-Length", INTEGER, "Size of the whole file"),
                        header("Upload-Defer-Length", {"const": "1"}, "Size sent later"),
                        header("Upload-Metadata", STRING, "`key base64,…`"),
                        header("Upload-Concat", STRING, "`partial` or `final;<urls>`"),
                        *CHUNK_HEADERS],
            body={**CHUNK, "description": "creation-with-upload: the first chunk (at most "
                                         "`Upload-Length` bytes); none for a final "
                                         "concatenation"}),
    },
    "api.upload": {
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "schema": {**STRING, "pattern": "^[A-Za-z0-9_-]{16,64}$"}}],
        "options": operation(
            "discoverUpload", "The same as OPTIONS on the collection (tus core)",
            _DISCOVERY, (404,), security=PUBLIC),
        "head": _tus(
            "getUploadOffset", "The upload's offset and state (tus core)",
            {200: answer("`Upload-Length` or `Upload-Defer-Length`, `Upload-Metadata`, "
                         "`Upload-Concat`, `Upload-Archive-Id` once finished",
                         headers={**TUS_STATE, "Cache-Control": {"schema": {
                             "const": "no-store"}}})},
            (400, 401, 403, 404, 423, 429), ("410", "412")),
        "get": _receipt_errors(operation(
            "getUploadReceipt", "The receipt of a finished upload (not a tus method)",
            {200: answer("The archive the upload became", RECEIPT,
                         {"Cache-Control": {"schema": {"const": "no-store"}}})},
            (401, 403, 404, 423, 429), security=UPLOADER,
            description="For the holder of the ticket's upload token, for as long as the "
                        "upload is kept: until `collector purge` removes it after its "
                        "`Upload-Expires`. No `Tus-Resumable` needed. 409 while the "
                        "upload is unfinished (or a partial one), 410 once it expired or "
                        "its archive was deleted.",
            parameters=[ref("Upload-Token", "parameters")])),
        "patch": _tus(
            "appendChunk", "Append a chunk at `Upload-Offset` (tus core)",
            {204: answer("Stored and fsynced; no body, the last chunk's answer included. "
                         "The chunk that completes the upload (and an empty PATCH at the "
                         "end of a finished upload, for a client whose last answer was "
                         "lost; 410 once the archive is deleted) adds the receipt's "
                         "headers; `GET` on the upload gives the whole receipt",
                         headers={**TUS_STATE, **ARCHIVE_ID_HEADER, **RECEIPT_HEADERS})},
            (400, 401, 403, 404, 413, 423, 429, 507), ("409", "410", "412", "415", "460"),
            description="403 on a final (concatenated) upload. A deferred length is given "
                        "with `Upload-Length` here. A resolved ticket refuses chunks (423).",
            parameters=[header("Upload-Offset", INTEGER, "Must equal the upload's offset",
                               True),
                        header("Upload-Length", INTEGER, "A deferred length"),
                        *CHUNK_HEADERS],
            body={**CHUNK, "required": True}),
        "delete": _tus(
            "terminateUpload", "Terminate the upload (tus termination)",
            {204: answer("Removed; an attempt it held is given back to the ticket")},
            (401, 403, 404, 423, 429), ("409", "412")),
    },
}

SEARCH_PARAMETERS = [
    query("q", {**STRING, "minLength": 1, "maxLength": 1000}, "Text or regular expression",
          required=True),
    query("regex", BOOLEAN, "`q` is a regular expression (Python syntax); 400 if invalid or "
          "out of bounds: a repeat count above 1000, groups nested over 20 deep, or over "
          "10,000 parts once repeats are counted"),
    query("ignore_case", BOOLEAN, "Case-insensitive"),
    query("context", {**INTEGER, "minimum": 0, "maximum": 10, "default": 0},
          "Lines of context before and after each hit"),
    query("member", STRING, "Search only the member with this path"),
    query("limit", {**INTEGER, "minimum": 1, "maximum": 1000, "default": 100},
          "Matching lines at most"),
]
SEARCH_NOTE = ("Text members only (binary ones are skipped), compressed members "
               "decompressed. Stops at the first cap reached — `limit` results, "
               "INSPECT_SEARCH_MAX_BYTES bytes scanned or INSPECT_SEARCH_TIMEOUT seconds — "
               "and says which in `reason`. At most INSPECT_SEARCH_CONCURRENCY searches "
               "run at once per server process: one more is a 503 with `Retry-After`. "
               "Needs a two-factor verified caller.")
INSPECT_OPERATIONS = {
    "api.archive.members": {
        "get": operation(
            "listArchiveMembers", "List the files inside the archive",
            {200: answer("One page, in the archive's order",
                         {"type": "array", "items": ref("Member")},
                         {**LIST_HEADERS, "X-Archive-Format": {
                             "description": "tar, tar.gz, tar.bz2, tar.xz, tar.zst, zip, "
                                            "gz, bz2, xz, zst or plain", "schema": STRING}})},
            (400, 401, 403, 404, 422), parameters=PAGE,
            description="The index is built on the first request (503 with `Retry-After` to "
                        "others meanwhile). `X-Index-Incomplete` says why when the archive "
                        "is damaged or a limit stopped indexing: the members before that "
                        "are listed. Needs a two-factor verified caller."),
    },
    "api.archive.member": {
        "get": operation(
            "downloadArchiveMember", "Download one member's bytes, as stored",
            {200: answer("The member", headers=FILE_HEADERS, content=OCTETS),
             206: answer("The requested range", content=OCTETS,
                         headers={**FILE_HEADERS, "Content-Range": {"schema": STRING}}),
             304: answer("Not modified"),
             416: answer("The requested range cannot be satisfied",
                         content={"text/plain": {"schema": STRING}, **json_content(ref("Error"))},
                         headers={"Content-Range": {"schema": STRING}})},
            (401, 403, 404, 422),
            description="Streams only that member (a compressed member stays compressed). "
                        "Needs a two-factor verified caller.",
            parameters=[header("Range", STRING, "A single range, e.g. `bytes=0-1023`"),
                        header("If-Range", STRING, "ETag the range depends on")]),
    },
    "api.archive.lines": {
        "get": operation(
            "getMemberLines", "A page of a text member's lines (the viewer)",
            {200: answer("The lines", ref("Lines"))}, (400, 401, 403, 404, 422),
            description="Compressed members are decompressed; binary ones are refused (422). "
                        "Needs a two-factor verified caller.",
            parameters=[query("start", {**INTEGER, "minimum": 1, "default": 1},
                              "First line (1-based)"),
                        query("count", {**INTEGER, "minimum": 1, "maximum": 1000,
                                        "default": 200}, "Lines at most"),
                        query("tail", BOOLEAN, "The last `count` lines instead")]),
    },
    "api.archive.search": {
        "get": operation("searchArchive", "Search inside the archive",
                         {200: answer("Hits grouped by member", ref("ArchiveSearch"))},
                         (400, 401, 403, 404, 422), description=SEARCH_NOTE,
                         parameters=SEARCH_PARAMETERS),
    },
    "api.ticket.search": {
        "get": operation("searchTicket", "Search every archive of the ticket",
                         {200: answer("Hits grouped by archive and member",
                                      ref("TicketSearch"))},
                         (400, 401, 403, 404), description=SEARCH_NOTE + " An archive that "
                         "cannot be read is reported in its `errors`; the others are searched.",
                         parameters=SEARCH_PARAMETERS),
    },
}

OPERATIONS = {
    "api.platforms": {
        "get": _list("Platforms", "Platform", []),
        "post": _one("create", "Platform", "Platform", WRITE, 201,
                     body=json_body(ref("PlatformInput")), description="Admins only."),
    },
    "api.platform": {
        "get": _one("get", "Platform", "Platform"),
        "put": _one("replace", "Platform", "Platform", WRITE,
                    body=json_body(ref("PlatformInput")), description="Admins only."),
        "patch": _one("update", "Platform", "Platform", WRITE,
                      body=patch_body(PlatformSchema()),
                      description="Admins only."),
        "delete": _delete("Platform", (401, 403, 404, 409),
                          "Admins only; refused (409) while it has tickets."),
    },
    "api.tickets": {
        "get": _list("Tickets", "Ticket", [
            comma_list("number", "Ticket numbers, comma-separated"),
            query("resolved", BOOLEAN, "Resolved or not (also 1/0, yes/no)"),
            query("platform", STRING, "Platform name"),
            query("user", STRING, "Username of the creator"),
            query("search", STRING, "Part of the number or of the note"), *TIME_BOUNDS]),
        "post": _one("create", "Ticket", "Ticket", WRITE, 201,
                     body=json_body(ref("TicketInput")),
                     description="Mints the upload token; 404 when the platform does not "
                                 "exist, 403 when the caller may not add tickets to it."),
    },
    "api.ticket": {
        "get": _one("get", "Ticket", "Ticket"),
        "put": _one("replace", "Ticket", "Ticket", WRITE, body=json_body(ref("TicketInput")),
                    description="Fields left out take their defaults (`resolved` false, "
                                "`note` empty). `lifetime_days` counts from now."),
        "patch": _one("update", "Ticket", "Ticket", WRITE,
                      body=patch_body(TicketSchema()),
                      description="`lifetime_days` counts from now: it extends the token."),
        "delete": _delete("Ticket", (401, 403, 404, 423),
                          description="Its archives and their files go with it; 423 while "
                                      "it is under legal hold."),
    },
    "api.ticket.token": {
        "post": operation("rotateTicketToken", "Replace the ticket's upload token",
                          {200: answer("The ticket with its new token", ref("Ticket"))}, ITEM),
    },
    "api.archives": {
        "get": _list("Archives", "Archive", [
            comma_list("ticket", "Ticket numbers, comma-separated"),
            comma_list("id", "Archive ids, comma-separated"), *TIME_BOUNDS]),
        "post": UPLOAD,
        "put": {**UPLOAD, "operationId": "putArchive"},
    },
    "api.archive.named": {
        "put": {**UPLOAD, "operationId": "putNamedArchive",
                "summary": "Upload an archive named by the path (`curl -T file …/archives/`)"},
    },
    "api.archive": {
        "get": _one("get", "Archive", "Archive"),
        "patch": _one("update", "Archive", "Archive", (400, 401, 403, 404),
                      body=json_body(ref("ArchivePatch")),
                      description="Rename it, or move it to another ticket (by number)."),
        "delete": _delete("Archive", (401, 403, 404, 423),
                          description="Its file is removed after the commit; 423 while its "
                                      "ticket is under legal hold."),
    },
    "api.archive.download": {
        "get": operation(
            "downloadArchive", "Download the archive's bytes",
            {200: answer("The whole file", headers=FILE_HEADERS, content=OCTETS),
             206: answer("The requested range", content=OCTETS,
                         headers={**FILE_HEADERS, "Content-Range": {"schema": STRING}}),
             302: answer("With `STORAGE_DOWNLOAD=redirect` (S3): a presigned URL of the "
                         "object, valid `STORAGE_DOWNLOAD_EXPIRY` seconds, whose answer "
                         "carries the same name; Range is then between client and store",
                         headers={"Location": {"schema": {**STRING, "format": "uri"}}}),
             304: answer("Not modified (If-None-Match, If-Modified-Since)"),
             # WebOb's conditional response answers this one itself, in plain text.
             416: answer("The requested range cannot be satisfied",
                         content={"text/plain": {"schema": STRING}, **json_content(ref("Error"))},
                         headers={"Content-Range": {"schema": STRING,
                                                    "description": "`bytes */size`"}})},
            (401, 403, 404),
            description="Needs a two-factor verified caller. Always application/octet-stream, "
                        "never compressed or rendered.",
            parameters=[header("Range", STRING, "e.g. `bytes=1000-` to resume"),
                        header("If-Range", STRING, "ETag or date the range depends on"),
                        header("If-None-Match", STRING, "ETag (the sha256)")]),
    },
    "api.index": {
        "get": {"operationId": "getIndex", "summary": "Where the API's parts are",
                "responses": {"200": answer("Links", ref("Index"))}, "security": PUBLIC},
    },
    "api.check.health": {
        "get": {"operationId": "getHealth", "summary": "Is the service up (database, storage)",
                "responses": {"200": answer("Healthy", ref("Health")),
                              "503": answer("Unhealthy", ref("Health"), RETRY_AFTER)},
                "security": PUBLIC},
    },
    "api.check.storage": {
        "get": operation("getStorage", "Disk usage of the archive storage",
                         {200: answer("Usage in bytes", ref("Storage"))}, (401, 403)),
    },
    "api.check.token": {
        "get": operation("getTokenState", "State of an upload token",
                         {200: answer("The token's state", ref("TokenState"))}, (404, 429),
                         description="An unknown token counts against the client's "
                                     "address: past the limit every token check from it "
                                     "answers 429 (upload-token guessing).",
                         security=PUBLIC),
    },
    "api.auth.token": {
        "post": operation("obtainTokens", "Exchange password and TOTP code for bearer tokens",
                          {200: answer("Access and refresh tokens", ref("TokenPair"))},
                          (400, 401, 429), body=json_body(ref("Credentials")),
                          security=PUBLIC),
    },
    "api.auth.refresh": {
        "post": operation("refreshTokens", "Rotate a refresh token (the old pair is revoked)",
                          {200: answer("New access and refresh tokens", ref("TokenPair"))},
                          (400, 401), body=json_body(ref("RefreshInput")), security=PUBLIC),
    },
    "api.auth.verify": {
        "post": operation("verifyToken", "Is a token valid",
                          {200: answer("Valid", ref("TokenVerification"))}, (400, 401),
                          body=json_body(ref("TokenInput")), security=PUBLIC),
    },
    "api.auth.revoke": {
        "post": operation("revokeToken", "Revoke a token (and the access tokens it minted)",
                          {204: answer("Revoked")}, (400, 401),
                          body=json_body(ref("TokenInput")), security=PUBLIC),
    },
    "api.auth.tokens": {
        "get": operation("listPersonalTokens", "The caller's personal API tokens",
                         {200: answer("All of them (not paginated)",
                                      {"type": "array", "items": ref("PersonalToken")})},
                         (401, 403)),
        "post": operation("createPersonalToken", "Create a personal API token",
                          {201: answer("Created; the secret is in `token`",
                                       ref("NewPersonalToken"))}, (400, 401, 403),
                          body=json_body(ref("PersonalTokenInput"))),
    },
    "api.auth.personal": {
        "delete": _delete("PersonalToken"),
    },
    "api.audit": {
        "get": operation("listAuditEvents", "The audit log, newest first (admin, two-factor)",
                         {200: answer("One page of events",
                                      {"type": "array", "items": ref("AuditEvent")},
                                      LIST_HEADERS)},
                         (400, 401, 403), parameters=[
                             query("ticket", {**ID, "minimum": 0}, "Ticket number"),
                             query("actor", STRING, "Username of who acted"),
                             query("action", STRING, "An action, or a prefix ending in `.` "
                                   "(`upload.`)"),
                             query("since", TIME_BOUND, "At or after"),
                             query("until", TIME_BOUND, "Before"), *PAGE]),
    },
    "api.webhooks": {
        "get": operation("listWebhooks", "Every platform's webhooks (admin, two-factor)",
                         {200: answer("All of them (not paginated)",
                                      {"type": "array", "items": ref("Webhook")})},
                         (401, 403)),
        "post": _one("create", "Webhook", "Webhook", WRITE, 201,
                     body=json_body(ref("WebhookInput")),
                     description="Admins only; 404 when the platform does not exist."),
    },
    "api.webhook": {
        "get": _one("get", "Webhook", "Webhook"),
        "patch": _one("update", "Webhook", "Webhook", WRITE,
                      body=patch_body(WebhookSchema()),
                      description="Admins only."),
        "delete": _delete("Webhook", description="Its deliveries go with it."),
    },
    "api.webhook.deliveries": {
        "get": operation("listWebhookDeliveries", "Webhook deliveries, newest first, with "
                         "every attempt (admin, two-factor)",
                         {200: answer("One page of deliveries",
                                      {"type": "array", "items": ref("WebhookDelivery")},
                                      LIST_HEADERS)},
                         (400, 401, 403), parameters=[
                             query("webhook", {**ID, "minimum": 0}, "Webhook id"),
                             query("state", {"enum": ["pending", "delivered", "failed"]},
                                   "Delivery state"),
                             query("event", STRING, "Event name"), *PAGE]),
    },
    "api.webhook.redeliver": {
        "post": operation("redeliverWebhookDelivery", "Send a delivered or failed event again "
                          "(admin, two-factor)",
                          {201: answer("The new delivery: the same event and event id, due "
                                       "now, retried on its own", ref("WebhookDelivery"))},
                          (401, 403, 404, 409),
                          description="409 while the delivery is still pending (it is "
                                      "retried anyway) or its webhook is disabled."),
    },
    "api.user.tokens": {
        "get": operation("listUserTokens", "Every live API token of a user, of every kind, "
                         "without secrets (admin, two-factor)",
                         {200: answer("All of them (not paginated)",
                                      {"type": "array", "items": ref("UserToken")})},
                         ITEM),
    },
    "api.user.tokens.revoke": {
        "post": operation("revokeUserTokens", "Revoke every access and refresh token of a "
                          "user, and the personal ones unless kept (admin, two-factor)",
                          {200: answer("How many were revoked", ref("RevokedTokens"))},
                          (400, *ITEM), body={**json_body(ref("RevokeTokensInput")),
                                              "required": False}),
    },
    "api.user.token": {
        "delete": _delete("UserToken", description="Revoking a refresh token revokes the "
                          "access tokens minted with it. Admins only; 404 for a token "
                          "that is not this user's, revoked or expired."),
    },
    "api.openapi": {
        "get": {"operationId": "getOpenAPI", "summary": "This document",
                "responses": {"200": answer("OpenAPI 3.1", {"type": "object"})},
                "security": PUBLIC},
    },
    **TUS_OPERATIONS,
    **INSPECT_OPERATIONS,
}


# The orchestrators' probes (collector/probes.py): beside the API, at the top of the site.
PROBES = {
    "/livez": {"get": {
        "operationId": "getLiveness", "summary": "Does the process answer (nothing else asked)",
        "responses": {"200": answer("Alive", ref("Liveness"))}, "security": PUBLIC}},
    "/readyz": {"get": {
        "operationId": "getReadiness",
        "summary": "Should this server get new work: database and storage reachable, not "
                   "stopping",
        "description": "Answers any Host (ALLOWED_HOSTS does not apply). 503 `draining` "
                       "from the first SIGTERM until the process exits.",
        "responses": {"200": answer("Ready", ref("Readiness")),
                      "503": answer("Not ready, or stopping", ref("Readiness"), RETRY_AFTER)},
        "security": PUBLIC}},
}


def _head(get):
    """HEAD: cornice registers it beside every GET; the same answers without a body."""
    responses = {}
    for status, response in get["responses"].items():
        if "$ref" in response:
            response = {"description": ERRORS[int(status)]}
        responses[status] = {k: v for k, v in response.items() if k != "content"}
    operation_id, summary = get["operationId"], get["summary"]
    return {**get, "responses": responses,
            "operationId": f"head{operation_id[0].upper()}{operation_id[1:]}",
            "summary": f"Headers only: {summary[0].lower()}{summary[1:]}"}


def _path_item(route, operations):
    path = ROUTES[route][0]
    item = {}
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    if names:
        item["parameters"] = [{"name": name, "in": "path", "required": True,
                               "schema": PATH_PARAMETERS[name]} for name in names]
    item.update(copy.deepcopy(operations))
    if "get" in item and "head" not in item:  # tus's HEAD is an operation of its own
        item["head"] = _head(item["get"])
    return PREFIX + path, item


@functools.cache
def document():
    """The document without ``servers`` (that depends on the request)."""
    error_responses = {str(status): answer(text, ref("Error"))
                       for status, text in ERRORS.items()}
    for status in ("429", "503"):
        error_responses[status]["headers"] = RETRY_AFTER
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Logs Collector API", "version": "1",
            "description": "Staff manage platforms and tickets and fetch archives; customers "
                           "upload archives with a ticket's upload token. Lists are plain "
                           "JSON arrays paginated with `limit`/`offset`, `X-Total-Count` and "
                           "`Link`. Every path also answers without its trailing slash.",
        },
        "security": STAFF,
        "paths": {**dict(_path_item(route, ops) for route, ops in OPERATIONS.items()),
                  **{path: {**copy.deepcopy(item), "head": _head(item["get"])}
                     for path, item in PROBES.items()}},
        "components": {
            "schemas": SCHEMAS,
            "parameters": PARAMETERS,
            "responses": error_responses,
            "headers": {
                "X-Total-Count": {"description": "Items matching, over all pages",
                                  "schema": {**INTEGER, "minimum": 0}},
                "Link": {"description": "RFC 8288 `first`, `last`, `prev`, `next` pages",
                         "schema": STRING},
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An access token from /auth/token/ or a personal "
                                          "API token (`Authorization: Bearer …`)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "session",
                            "description": "The web sign-in; writes need `X-CSRF-Token`"},
                "uploadToken": {"type": "apiKey", "in": "header", "name": "Upload-Token",
                                "description": "A ticket's upload token: uploads only"},
            },
        },
    }


@openapi.get(permission=NO_PERMISSION_REQUIRED)
def get_openapi(request):
    return {**document(), "servers": [{"url": request.application_url}]}
