"""The views that turn every failure into a clear answer.

Under ``/api/`` every failure is JSON ``{"detail": …}``; anywhere else it is a page in the
site's style (and an anonymous visitor who needs to sign in is sent to the sign-in page).
No traceback ever reaches a client: unexpected exceptions are logged and answered 500.
"""

import logging
from urllib.parse import urlencode

from markupsafe import escape
from pyramid.csrf import BadCSRFOrigin, BadCSRFToken
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import HTTPException, HTTPSeeOther
from pyramid.renderers import render
from pyramid.view import (
    exception_view_config,
    forbidden_view_config,
    notfound_view_config,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from collector.archives.storage import StorageUnavailable
from collector.errors import DomainError, json_error
from collector.resources import hidden_from, staff_data
from collector.security import MfaRequired

log = logging.getLogger(__name__)


TITLES = {400: "Bad request", 401: "Sign-in required", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 413: "Too large", 422: "Cannot be read",
          423: "Locked", 429: "Too many attempts", 500: "Internal error",
          503: "Service unavailable", 507: "Storage full"}


def page_error(request, status, detail, headers=None):
    """The error page in the site's style; plain HTML if even that cannot be rendered."""
    title = TITLES.get(status, "Error")
    response = request.response
    try:
        body = render("error.jinja2", {"status": status, "title": title, "detail": detail},
                      request=request)
    except Exception:  # e.g. the database is down and the layout cannot ask who is asking
        log.warning("error page for %s could not be rendered", status, exc_info=True)
        body = (f"<!doctype html><title>{status} {title}</title><h1>{status} {title}</h1>"
                f"<p>{escape(detail)}</p>")
    response.status_int = status
    response.headers.update(headers or {})
    response.content_type = "text/html"
    response.text = body
    return response


def error(request, status, detail, headers=None, **extra):
    if request.path_info.startswith("/api/"):
        return json_error(request, status, detail, headers, **extra)
    return page_error(request, status, detail, headers)


@exception_view_config(DomainError)
def domain_error(exc, request):
    extra = {"errors": exc.errors} if getattr(exc, "errors", None) else {}
    return error(request, exc.status, exc.detail,
                      {k.replace("_", "-"): str(v) for k, v in exc.headers.items()}, **extra)


def _hidden(exc, request):
    return (request.identity is not None and not isinstance(exc.result, MfaRequired)
            and exc.result is not None and hidden_from(request, request.context))


@forbidden_view_config()
def forbidden(exc, request):
    if _hidden(exc, request):
        # What the caller may not see answers as what does not exist (see notfound).
        return notfound(exc, request)
    if not request.path_info.startswith("/api/"):
        return forbidden_page(exc, request)
    if request.identity is None:
        return _sign_in_first(request)
    if isinstance(exc.result, MfaRequired):
        return json_error(request, 403, MfaRequired.reason)
    if exc.result is None:  # an HTTPForbidden raised by a view has no ACL result
        return json_error(request, 403, exc.detail or "forbidden")
    return json_error(request, 403, "You do not have permission to perform this action.")


def _sign_in_first(request):
    """The answer to a caller who is nobody where staff are needed."""
    if request.path_info.startswith("/api/"):
        return json_error(request, 401, "Authentication credentials were not provided or are "
                          "invalid.", {"WWW-Authenticate": 'Bearer realm="api"'})
    if request.method in {"GET", "HEAD"}:
        # Sign in first, then come back here.
        return HTTPSeeOther(request.application_url + "/login?"
                            + urlencode({"next": request.path_qs}))
    return page_error(request, 403, "Please sign in first.")


def forbidden_page(exc, request):
    if request.identity is None:
        return _sign_in_first(request)
    if isinstance(exc.result, MfaRequired):
        return page_error(request, 403, "This needs a session that passed two-factor "
                          "authentication: sign out and sign in again with your code.")
    return page_error(request, 403, "You do not have permission to see this page.")


@notfound_view_config()
def notfound(exc, request):
    if request.identity is None and staff_data(getattr(request, "context", None)):
        # Anonymous: a missing ticket answers as an existing one (sign in first), else
        # the difference would tell which ticket numbers and archive ids exist.
        return _sign_in_first(request)
    if request.path_info.startswith("/api/"):
        return error(request, 404, "Not found.")
    if isinstance(exc, PredicateMismatch):
        # A page exists here but not for this method (pages use no other predicate).
        return page_error(request, 405, f"This page does not accept {request.method}.")
    return page_error(request, 404, "There is no page at this address.")


API_CSRF_DETAIL = ("CSRF token missing or incorrect: a request authenticated by the session "
                   "cookie must send the session's token in X-CSRF-Token (or use a bearer "
                   "token)")
CSRF_DETAIL = ("The form has expired or was sent from another site. Go back, reload the page "
               "and try again.")


@exception_view_config(HTTPException)
def http_exception(exc, request):
    if exc.status_int < 400:
        return exc
    if isinstance(exc, (BadCSRFToken, BadCSRFOrigin)):
        if not request.path_info.startswith("/api/"):
            return page_error(request, 400, CSRF_DETAIL)
        # A cookie-authenticated API write without the session's token: refused as the
        # original project's API did (403), saying what is missing.
        return json_error(request, 403, API_CSRF_DETAIL)
    return error(request, exc.status_int, exc.detail or exc.title, dict(
        (k, v) for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}))


@exception_view_config(Exception)
def unexpected(exc, request):
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated
                                        or isinstance(exc, OperationalError)):
        log.warning("database unavailable: %s", exc)
        return error(request, 503, "database unavailable, try again shortly",
                     {"Retry-After": "5"})
    if isinstance(exc, StorageUnavailable):
        # An object store that failed at a commit's vote or while a download started.
        log.warning("archive storage unavailable: %s", exc)
        return error(request, 503, "archive storage unavailable, try again shortly",
                     {"Retry-After": "10"})
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error(request, 500, "internal error; it has been logged")
