"""Domain errors and the views that turn every failure into a clear JSON answer.

Services raise ``DomainError`` subclasses; they know nothing of HTTP beyond a status code.
No traceback ever reaches a client: unexpected exceptions are logged and answered 500.
"""

import logging

from pyramid.httpexceptions import HTTPException
from pyramid.view import (
    exception_view_config,
    forbidden_view_config,
    notfound_view_config,
)

from collector.security import MfaRequired

log = logging.getLogger(__name__)


class DomainError(Exception):
    status = 400
    headers = {}

    def __init__(self, detail, **headers):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class PayloadTooLarge(DomainError):
    status = 413


class RangeNotSatisfiable(DomainError):
    status = 416


class Locked(DomainError):
    status = 423


class TooManyRequests(DomainError):
    status = 429


class InsufficientStorage(DomainError):
    status = 507


class ServiceUnavailable(DomainError):
    status = 503


def json_error(request, status, detail, headers=None, **extra):
    response = request.response
    response.status_int = status
    response.headers.update(headers or {})
    response.content_type = "application/json"
    response.json_body = {"detail": detail, **extra}
    return response


@exception_view_config(DomainError)
def domain_error(exc, request):
    extra = {"errors": exc.errors} if getattr(exc, "errors", None) else {}
    return json_error(request, exc.status, exc.detail,
                      {k.replace("_", "-"): str(v) for k, v in exc.headers.items()}, **extra)


@forbidden_view_config()
def forbidden(exc, request):
    if request.identity is None:
        return json_error(request, 401, "Authentication credentials were not provided or are "
                          "invalid.", {"WWW-Authenticate": 'Bearer realm="api"'})
    if isinstance(exc.result, MfaRequired):
        return json_error(request, 403, MfaRequired.reason)
    if exc.result is None:  # a CSRF failure raises HTTPForbidden without an ACL result
        return json_error(request, 403, exc.detail or "forbidden")
    return json_error(request, 403, "You do not have permission to perform this action.")


@notfound_view_config()
def notfound(exc, request):
    return json_error(request, 404, "Not found.")


@exception_view_config(HTTPException)
def http_exception(exc, request):
    if exc.status_int < 400:
        return exc
    return json_error(request, exc.status_int, exc.detail or exc.title, dict(
        (k, v) for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}))


@exception_view_config(Exception)
def unexpected(exc, request):
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, DBAPIError) and (exc.connection_invalidated
                                        or isinstance(exc, OperationalError)):
        log.warning("database unavailable: %s", exc)
        return json_error(request, 503, "database unavailable, try again shortly",
                          {"Retry-After": "5"})
    log.exception("unexpected error on %s %s", request.method, request.path)
    return json_error(request, 500, "internal error; it has been logged")
