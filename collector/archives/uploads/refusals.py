"""Upload requests that end in an error, in the audit log.

A tween keyed on the upload routes (as ``collector.metrics`` counts them) records every
refused or failed upload, so no upload protocol carries audit code for its refusals. The
reason is the error's stable code (``collector.errors.reason_of``), never read out of its
English detail. The ticket is found here, from the Upload-Token, before recording: the
audit log keeps only the token's hint, and no credential reaches it or a webhook.
"""

import logging

from pyramid.tweens import INGRESS

from collector.audit.services import record, token_hint
from collector.errors import reason_of
from collector.tickets.services import ticket_ref_by_token

# Requests whose error answer is a refused or failed upload: the starts (the routes
# metrics.UPLOAD_STARTS names), and tus chunks.
UPLOAD_REQUESTS = {("api.archives", "POST"), ("api.archives", "PUT"),
                   ("api.archive.named", "PUT"), ("api.uploads", "POST"),
                   ("api.upload", "PATCH")}
DETAIL_LIMIT = 500

log = logging.getLogger(__name__)


def _detail_of(response):
    if response is None or response.content_type != "application/json":
        return ""
    try:
        detail = response.json_body.get("detail", "")
    except (ValueError, AttributeError):
        return ""
    return detail if isinstance(detail, str) else ""


def refusals_tween_factory(handler, _registry):
    def tween(request):
        response, status = None, 500
        try:
            response = handler(request)
            status = response.status_int
            return response
        finally:
            matched = getattr(request, "matched_route", None)
            route = matched.name if matched is not None else None
            if status >= 400 and (route, request.method) in UPLOAD_REQUESTS:
                try:
                    _record(request, route, status, _detail_of(response))
                except Exception:  # never turn the answer into a 500 over its audit event
                    log.exception("audit: could not record the refused upload")

    return tween


def _record(request, route, status, message):
    outcome = "failed" if status >= 500 else "refused"
    token = (request.headers.get("Upload-Token") or "").strip()
    if token:
        # Whatever said it, a credential is never kept: its hint stands in for it.
        message = message.replace(token, token_hint(token))
    detail = {"status": status, "size": request.content_length or 0,
              "message": message[:DETAIL_LIMIT], "method": request.method}
    if route == "api.upload":
        detail["upload"] = request.matchdict.get("id", "")[:64]
    ticket = None
    if token:
        detail["token"] = token_hint(token)
        ticket = _ticket_of(request, token)
    record(request, f"upload.{outcome}", outcome=outcome,
           reason=reason_of(getattr(request, "exception", None), status), detail=detail,
           ticket=ticket)


def _ticket_of(request, token):
    """The ticket the token names, read on a connection of its own (the request's
    transaction is over); None when it names none, or the database cannot say (the
    event is then recorded without it, if the database comes back)."""
    try:
        with request.registry["db_engine"].connect() as connection:
            return ticket_ref_by_token(connection, token)
    except Exception:
        log.warning("audit: the ticket of a refused upload could not be found", exc_info=True)
        return None


def includeme(config):
    # Outermost but for the ingress: the request's transaction has ended when it returns.
    config.add_tween("collector.archives.uploads.refusals.refusals_tween_factory",
                     under=INGRESS)
