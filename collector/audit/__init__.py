"""The audit log: who did what, to which ticket or archive, from where, and how it ended.

``services.record`` is the one entry point. Upload requests that end in an error are
recorded here, by a tween keyed on the upload routes (as ``collector.metrics`` counts
them), so no upload protocol carries audit code for its refusals.
"""

from pyramid.tweens import INGRESS

# Requests whose error answer is a refused or failed upload: the starts (the routes
# metrics.UPLOAD_STARTS names), and tus chunks.
UPLOAD_REQUESTS = {("api.archives", "POST"), ("api.archives", "PUT"),
                   ("api.archive.named", "PUT"), ("api.uploads", "POST"),
                   ("api.upload", "PATCH")}


def upload_reason(status, message):
    """A short reason for a refused or failed upload, from its status and its detail."""
    # Imported here: collector.metrics imports every model, this package's too.
    from collector.metrics import REASONS

    message = message.lower()
    if "client gone" in message:
        return "client_gone"
    if status in (401, 403):
        return "bad_token"
    if status == 423:
        if "resolved" in message:
            return "resolved"
        return "no_attempts" if "attempts" in message else "expired"
    return REASONS.get(status, "error" if status >= 500 else "other")


def _detail_of(response):
    if response is None or response.content_type != "application/json":
        return ""
    try:
        detail = response.json_body.get("detail", "")
    except (ValueError, AttributeError):
        return ""
    return detail if isinstance(detail, str) else ""


def audit_tween_factory(handler, registry):
    def tween(request):
        response, status = None, 500
        try:
            response = handler(request)
            status = response.status_int
            return response
        finally:
            route = getattr(request.matched_route, "name", None) \
                if getattr(request, "matched_route", None) is not None else None
            if status >= 400 and (route, request.method) in UPLOAD_REQUESTS:
                _record_upload_error(request, route, status, _detail_of(response))

    return tween


def _record_upload_error(request, route, status, message):
    outcome = "failed" if status >= 500 else "refused"
    detail = {"status": status, "size": request.content_length or 0,
              "message": message[:500], "method": request.method}
    if route == "api.upload":
        detail["upload"] = request.matchdict.get("id", "")[:64]
    from collector.audit import services

    services.record(request, f"upload.{outcome}", outcome=outcome,
                    reason=upload_reason(status, message), detail=detail,
                    token=request.headers.get("Upload-Token"))


def includeme(config):
    # Outermost but for the ingress: the request's transaction has ended when it returns.
    config.add_tween("collector.audit.audit_tween_factory", under=INGRESS)
