"""/api/v1/uploads/ — tus 1.0.0 resumable uploads (rules in archives/uploads/tus/).

``POST /uploads/`` creates an upload (creation, creation-with-upload, defer-length,
concatenation); ``HEAD``, ``PATCH`` and ``DELETE`` on ``/uploads/{id}`` ask its offset,
append a chunk and terminate it; ``OPTIONS`` says what the server supports. Every request
but OPTIONS needs ``Tus-Resumable: 1.0.0`` and the ticket's ``Upload-Token``. Every stored
chunk is answered 204 with no body, as tus 1.0.0 requires, the one that completes the upload
included: it adds the receipt as headers (``Upload-Archive-Id``, ``Upload-Receipt-*``), and
``GET /uploads/{id}`` answers the whole receipt as JSON for as long as the upload is kept.
"""

import re

from cornice import Service
from pyramid.events import NewRequest, NewResponse, subscriber
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from collector.api.v1 import PREFIX, error_handler, iso
from collector.archives.models import Archive
from collector.archives.uploads import SpoolReader, raw_chunks, receiving, spool_credit, tus
from collector.errors import BadRequest, Conflict, Forbidden, NotFound
from collector.resources import UploadNode, ticket_node
from collector.security import Permission
from collector.tickets import services as tickets

ARCHIVE_ID = "Upload-Archive-Id"
# The receipt of a finished upload in headers, for the 204 that completes it (tus allows no
# body there); the names are ours, prefixed as tus's own are.
RECEIPT_HEADERS = {"Upload-Receipt-Sha256": "sha256", "Upload-Receipt-Md5": "md5",
                   "Upload-Receipt-Size": "size"}
uploads = Service(name="tus_uploads", pyramid_route="api.uploads",
                  description="tus 1.0.0: create a resumable upload",
                  error_handler=error_handler)
upload = Service(name="tus_upload", pyramid_route="api.upload",
                 description="tus 1.0.0: one resumable upload", error_handler=error_handler)

_PATH = PREFIX + "/uploads"
# Another ticket's upload answers exactly as an unknown id does (the not-found view's words).
NOT_FOUND = "Not found."
# A method name is an HTTP token; an override naming a method these endpoints lack is
# taken as that method too, and answered as such (405).
_METHOD_NAME = re.compile(r"[A-Z]{1,16}")


@subscriber(NewRequest)
def method_override(event):
    """``X-HTTP-Method-Override`` for clients behind proxies that only pass GET and POST:
    tus 1.0.0 says the header, when present, is the method and the request's own is
    ignored, whatever that is. No cookie is read here (the token is a header), so a
    GET turned into a DELETE is no cross-site risk."""
    request = event.request
    override = request.headers.get("X-HTTP-Method-Override", "").strip().upper()
    if _METHOD_NAME.fullmatch(override) and request.path_info.startswith(_PATH):
        request.method = override


@subscriber(NewResponse)
def tus_resumable(event):
    # Every answer of the tus endpoints, errors included, names the protocol version.
    if event.request.path_info.startswith(_PATH):
        event.response.headers["Tus-Resumable"] = tus.VERSION


def _require_version(request):
    if request.headers.get("Tus-Resumable") != tus.VERSION:
        raise tus.PreconditionFailed(f"Tus-Resumable: {tus.VERSION} is required",
                                     Tus_Version=tus.VERSION)


def _release_on_finish(request):
    """Locks are released after the transaction has ended (finished callbacks run then)."""
    def release(lock):
        request.add_finished_callback(lambda _request: lock.release())

    return release


def _upload_of(request, allow_expired=False, tus_request=True):
    """The upload of the URL, for its own ticket's token only; another ticket's token gets
    404 like an unknown id, so ids cannot be probed. ``tus_request``: the method is one of
    tus's, so the request must name the protocol version (GET is ours, not tus's)."""
    if tus_request:
        _require_version(request)
    ticket = tickets.check_upload_token(request.dbsession, request.headers.get("Upload-Token"),
                                        need_attempt=False,
                                        address=request.remote_addr or "")
    node = request.context
    if not isinstance(node, UploadNode):  # pragma: no cover - traversal answers 404 first
        raise NotFound(NOT_FOUND)
    # The upload already holds its attempt, so the token may have none left: the policy
    # still grants its ticket's principal, and the upload's own ACL decides.
    if not request.has_permission(Permission.UPLOAD, node):
        raise NotFound(NOT_FOUND)
    if not allow_expired and tus.is_expired(node.upload):
        raise tus.Gone("this upload has expired; start a new one")
    return node.upload, ticket


def _state_headers(request, row):
    headers = request.response.headers
    headers["Upload-Expires"] = tus.http_date(row.expires_at)
    headers["Cache-Control"] = "no-store"
    if row.concat != "final" or row.finished_at is not None:
        headers["Upload-Offset"] = str(row.offset)
    if row.length is not None:
        headers["Upload-Length"] = str(row.length)
    else:
        headers["Upload-Defer-Length"] = "1"
    if row.metadata_header:
        headers["Upload-Metadata"] = row.metadata_header
    if row.concat == "partial":
        headers["Upload-Concat"] = "partial"
    elif row.concat == "final":
        # As the creation request named the partial uploads (tus 1.0.0).
        headers["Upload-Concat"] = f"final;{row.parts}"
    if row.archive_id is not None:
        headers[ARCHIVE_ID] = str(row.archive_id)


def _receipt_headers(request, archive):
    headers = request.response.headers
    headers[ARCHIVE_ID] = str(archive.id)
    for name, field in RECEIPT_HEADERS.items():
        value = getattr(archive, field)
        if value is not None:
            headers[name] = str(value)


def _receipt(request, ticket, archive):
    """What the customer keeps and staff see: the same fields as the archive list."""
    _receipt_headers(request, archive)
    return {"id": archive.id, "ticket": ticket.number, "name": archive.name,
            "size": archive.size, "sha256": archive.sha256, "md5": archive.md5,
            "time_create": iso(archive.time_create),
            "file": request.route_url("api.archive.download", id=archive.id, slash="")}


def _empty(request, status):
    response = request.response
    response.status_int = status
    response.content_type = None
    return response


def _body(request):
    size = request.content_length or 0
    if size and request.content_type != tus.CONTENT_TYPE:
        raise tus.UnsupportedMediaType(f"a chunk is sent as Content-Type: {tus.CONTENT_TYPE}")
    # Spooled and hashed by the server as it arrived (see archives/uploads/receiving.py).
    spooled = receiving.spooled_body(request, "tus") if size else None
    if spooled is not None:
        return spooled, size
    return raw_chunks(SpoolReader.of(request), size), size


def _part_urls(header):
    """``final;/api/v1/uploads/a http://host/api/v1/uploads/b`` → (the URLs as sent,
    ["a", "b"]): the ids are joined, the URLs echoed by HEAD."""
    kind, _, urls = header.partition(";")
    if kind.strip() != "final":
        raise BadRequest("Upload-Concat must be `partial` or `final;<url> <url> …`")
    return urls.strip(), [url.rstrip("/").rsplit("/", 1)[-1] for url in urls.split()]


@view_config(route_name="api.uploads", request_method="OPTIONS",
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
@view_config(route_name="api.upload", request_method="OPTIONS",
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def options(request):
    """What this server supports (no token or Tus-Resumable needed)."""
    headers = request.response.headers
    headers["Tus-Version"] = tus.VERSION
    headers["Tus-Max-Size"] = str(request.registry.settings["upload.max_size"])
    headers["Tus-Extension"] = ",".join(tus.EXTENSIONS)
    headers["Tus-Checksum-Algorithm"] = ",".join(tus.CHECKSUMS)
    return _empty(request, 204)


@uploads.post()
def create(request):
    _require_version(request)
    ticket = tickets.check_upload_token(request.dbsession, request.headers.get("Upload-Token"),
                                        address=request.remote_addr or "")
    if not request.has_permission(Permission.UPLOAD, ticket_node(request, ticket)):
        raise Forbidden("upload token is not valid for this ticket")
    headers, settings = request.headers, request.registry.settings
    if request.content_length and request.content_type != tus.CONTENT_TYPE:
        # Refused before the upload exists: nothing is created, no attempt spent.
        raise tus.UnsupportedMediaType(f"a chunk is sent as Content-Type: {tus.CONTENT_TYPE}")
    defer = headers.get("Upload-Defer-Length")
    if defer not in (None, "1"):
        raise BadRequest("Upload-Defer-Length must be 1")
    length = tus.parse_length(headers.get("Upload-Length"), "Upload-Length")
    concat = (headers.get("Upload-Concat") or "").strip()
    metadata = headers.get("Upload-Metadata")
    args = (request.dbsession, request.storage, settings, ticket)
    release = _release_on_finish(request)
    if concat.startswith("final"):
        if length is not None or request.content_length:
            raise BadRequest("a final upload has no Upload-Length and no body")
        urls, part_ids = _part_urls(concat)
        row, archive = tus.create_final(*args, part_ids, urls, metadata, release)
        return _created(request, row, ticket, archive)
    if concat not in ("", "partial"):
        raise BadRequest("Upload-Concat must be `partial` or `final;<url> <url> …`")
    make = tus.create_partial if concat == "partial" else tus.create_upload
    held = spool_credit(request)
    row = make(*args, length=length, defer=defer == "1", metadata_header=metadata,
               held=held)
    archive = None
    if request.content_length:
        # creation-with-upload: the body is the first chunk.
        chunks, size = _body(request)
        tus.lock_upload(request.dbsession, request.storage, row, release)
        archive = tus.append(*args[:3], row, ticket, chunks, size, offset=0,
                             checksum=tus.parse_checksum(headers.get("Upload-Checksum")),
                             held=held)
        receiving.check_not_cut(request)
    return _created(request, row, ticket, archive)


def _created(request, row, ticket, archive):
    request.response.location = request.route_url("api.upload", id=row.id, slash="")
    request.response.headers["Upload-Expires"] = tus.http_date(row.expires_at)
    request.response.headers["Upload-Offset"] = str(row.offset)
    request.response.status_int = 201
    if archive is None:
        return _empty(request, 201)
    return _receipt(request, ticket, archive)


def head(request):
    row, _ = _upload_of(request)
    _state_headers(request, row)
    return _empty(request, 200)


@upload.patch()
def patch(request):
    row, ticket = _upload_of(request)
    if row.concat == "final":
        raise Forbidden("a final upload is complete when created; it takes no PATCH")
    if request.content_type != tus.CONTENT_TYPE:
        raise tus.UnsupportedMediaType(f"a chunk is sent as Content-Type: {tus.CONTENT_TYPE}")
    headers = request.headers
    offset = tus.parse_length(headers.get("Upload-Offset"), "Upload-Offset")
    if offset is None:
        raise BadRequest("Upload-Offset is required")
    length = tus.parse_length(headers.get("Upload-Length"), "Upload-Length")
    checksum = tus.parse_checksum(headers.get("Upload-Checksum"))
    if row.finished_at is not None and row.concat != "partial":
        return _finished(request, row, offset)
    chunks, size = _body(request)
    tus.lock_upload(request.dbsession, request.storage, row, _release_on_finish(request))
    archive = tus.append(request.dbsession, request.storage, request.registry.settings, row,
                         ticket, chunks, size, offset=offset, checksum=checksum,
                         length=length, held=spool_credit(request))
    receiving.check_not_cut(request)
    request.response.headers["Upload-Offset"] = str(row.offset)
    request.response.headers["Upload-Expires"] = tus.http_date(row.expires_at)
    if archive is not None:
        _receipt_headers(request, archive)
    return _empty(request, 204)


def _archive_of(request, row):
    archive = None
    if row.archive_id is not None:
        archive = request.dbsession.get(Archive, row.archive_id)
    if archive is None:
        raise tus.Gone("the archive this upload became has been deleted")
    return archive


def _finished(request, row, offset):
    """A PATCH on an upload that is already an archive. The answer to its last chunk may
    have been lost on the way, so an empty PATCH at the end answers as that one did."""
    if offset != row.offset or request.content_length:
        raise Conflict("the upload is complete; it takes no more bytes")
    archive = _archive_of(request, row)
    request.response.headers["Upload-Offset"] = str(row.offset)
    request.response.headers["Upload-Expires"] = tus.http_date(row.expires_at)
    _receipt_headers(request, archive)
    return _empty(request, 204)


# cornice (and Pyramid) register a GET view for HEAD too, and HEAD is tus's: one view
# answers both, by method.
@upload.get()
def state_or_receipt(request):
    return head(request) if request.method == "HEAD" else receipt(request)


def receipt(request):
    """The receipt of a finished upload, as JSON, for its token's holder (tus's 204 to the
    last chunk has no body). Not a tus method, so no ``Tus-Resumable`` is needed."""
    row, ticket = _upload_of(request, allow_expired=True, tus_request=False)
    request.response.headers["Cache-Control"] = "no-store"
    if row.concat == "partial":
        raise Conflict("a partial upload has no receipt: the final upload that joins it "
                       "becomes the archive")
    if row.finished_at is None:
        if tus.is_expired(row):
            raise tus.Gone("this upload has expired; start a new one")
        of = f" of {row.length}" if row.length is not None else ""
        raise Conflict(f"the upload is not complete: {row.offset}{of} bytes received; "
                       "resume it (HEAD gives its offset)")
    return _receipt(request, ticket, _archive_of(request, row))


@upload.delete()
def terminate(request):
    row, _ = _upload_of(request, allow_expired=True)
    tus.lock_upload(request.dbsession, request.storage, row, _release_on_finish(request))
    tus.terminate(request.dbsession, request.storage, row)
    return _empty(request, 204)
