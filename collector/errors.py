"""Domain errors: what a service raises when it refuses, with a status and a reason code.

Services raise ``DomainError`` subclasses; they know nothing of HTTP beyond a status code.
Each error carries a stable, machine-readable ``reason`` (``token_unknown``,
``no_attempts``, ``legal_hold`` …): the audit log, the metrics and the webhooks read the
code, never the English ``detail``, which is for people. This module is a leaf of the
import graph: it imports nothing of the application, so every layer may raise its errors.
The views that turn them into answers are in ``collector.error_views``.
"""


class DomainError(Exception):
    status = 400
    reason = "bad_request"
    headers = {}

    def __init__(self, detail, *, reason=None, **headers):
        super().__init__(detail)
        self.detail = detail
        if reason is not None:
            self.reason = reason
        self.headers = headers


class BadRequest(DomainError):
    status = 400
    reason = "bad_request"


class Unauthorized(DomainError):
    status = 401
    reason = "unauthorized"


class Forbidden(DomainError):
    status = 403
    reason = "forbidden"


class NotFound(DomainError):
    status = 404
    reason = "not_found"


class Conflict(DomainError):
    status = 409
    reason = "conflict"


class PayloadTooLarge(DomainError):
    status = 413
    reason = "too_large"


class RangeNotSatisfiable(DomainError):
    status = 416
    reason = "range"


class Unprocessable(DomainError):
    """The request is fine but the data cannot be processed (a damaged archive, say)."""

    status = 422
    reason = "unreadable"


class Locked(DomainError):
    status = 423
    reason = "locked"


class TooManyRequests(DomainError):
    status = 429
    reason = "too_many_requests"


class InsufficientStorage(DomainError):
    status = 507
    reason = "no_space"


class ServiceUnavailable(DomainError):
    status = 503
    reason = "unavailable"


# The reason of an error answer that no DomainError explains (cornice's validation,
# Pyramid's own 404/405, a tus precondition answered by status alone): from its status.
STATUS_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden",
                  404: "not_found", 405: "method", 409: "conflict", 412: "protocol",
                  413: "too_large", 415: "protocol", 423: "locked", 429: "too_many_requests",
                  460: "checksum", 503: "unavailable", 507: "no_space"}


def reason_of(exception, status):
    """The reason code of an error answer: its DomainError's, else one from the status."""
    if isinstance(exception, DomainError):
        return exception.reason
    return STATUS_REASONS.get(status, "error" if status >= 500 else "other")


def json_error(request, status, detail, headers=None, **extra):
    response = request.response
    response.status_int = status
    response.headers.update(headers or {})
    response.content_type = "application/json"
    response.json_body = {"detail": detail, **extra}
    return response
